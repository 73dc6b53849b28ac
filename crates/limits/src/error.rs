//! Errors of the limits crate.

use std::path::PathBuf;

/// Everything that can go wrong loading or querying instance limits.
#[derive(Debug, thiserror::Error)]
pub enum LimitsError {
    /// A data file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A data file is not the expected JSON schema.
    #[error(
        "{path} is not a valid instance table (expected the instance-limits.json schema): {source}"
    )]
    Parse {
        /// The file.
        path: PathBuf,
        /// The JSON error.
        source: serde_json::Error,
    },
    /// A data file parsed but holds an impossible value.
    #[error("{path}: instance type {instance_type}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The offending type.
        instance_type: String,
        /// What is wrong.
        reason: String,
    },
    /// The instance type is not in the table.
    #[error("{}", unknown_type_message(.name, .suggestions, .source_desc))]
    UnknownType {
        /// The name asked for.
        name: String,
        /// Known names that look alike.
        suggestions: Vec<String>,
        /// Which table was searched.
        source_desc: String,
    },
    /// A CNI version string that is not `MAJOR.MINOR[.PATCH]`.
    #[error("invalid CNI version {0:?}: expected MAJOR.MINOR.PATCH, e.g. 1.19.0")]
    BadCniVersion(String),
}

fn unknown_type_message(name: &str, suggestions: &[String], source_desc: &str) -> String {
    let mut msg = format!("unknown instance type {name:?} (searched the {source_desc})");
    if suggestions.is_empty() {
        msg.push_str(
            "; point --data-dir or VPC_CNI_DATA_DIR at a directory holding instance-limits.json",
        );
    } else {
        msg.push_str("; did you mean ");
        msg.push_str(&suggestions.join(", "));
        msg.push('?');
    }
    msg
}
