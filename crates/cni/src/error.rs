//! CNI errors: the spec's error JSON (`cniVersion`, `code`, `msg`, `details`) and its codes.

use serde::Serialize;

/// CNI error codes (CNI spec "Error codes"; 999 is upstream skel's code for plain errors).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Code {
    /// 1: incompatible CNI version.
    IncompatibleVersion = 1,
    /// 2: unsupported field in the network configuration.
    UnsupportedField = 2,
    /// 3: container unknown or does not exist.
    UnknownContainer = 3,
    /// 4: invalid necessary environment variables.
    InvalidEnvironment = 4,
    /// 5: I/O failure.
    Io = 5,
    /// 6: failed to decode content.
    Decode = 6,
    /// 7: invalid network config.
    InvalidNetworkConfig = 7,
    /// 11: try again later.
    TryAgainLater = 11,
    /// 50: the plugin is not available (STATUS, CNI 1.1).
    PluginNotAvailable = 50,
    /// 999: anything else.
    Internal = 999,
}

/// An error the plugin prints on stdout (exit code 1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{msg}{}", if details.is_empty() { String::new() } else { format!(": {details}") })]
pub struct CniError {
    /// Error code.
    pub code: Code,
    /// Short message.
    pub msg: String,
    /// Longer explanation.
    pub details: String,
}

impl CniError {
    /// An error with a code and message.
    pub fn new(code: Code, msg: impl Into<String>) -> Self {
        CniError {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    /// Add details.
    pub fn with_details(mut self, details: impl Into<String>) -> Self {
        self.details = details.into();
        self
    }

    /// The error document for `cni_version`.
    pub fn to_json(&self, cni_version: &str) -> String {
        let mut v = serde_json::json!({ "cniVersion": cni_version, "code": self.code as u32, "msg": self.msg });
        if !self.details.is_empty() {
            v["details"] = serde_json::Value::String(self.details.clone());
        }
        v.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_document() {
        let e = CniError::new(
            Code::InvalidEnvironment,
            "required env variables [CNI_NETNS] missing",
        );
        let v: serde_json::Value = serde_json::from_str(&e.to_json("0.4.0")).unwrap();
        assert_eq!(v["code"], 4);
        assert_eq!(v["cniVersion"], "0.4.0");
        assert!(v.get("details").is_none());
        let d = CniError::new(Code::Internal, "add cmd").with_details("boom");
        assert_eq!(d.to_string(), "add cmd: boom");
    }
}
