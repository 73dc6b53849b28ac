//! The plugin's log: JSON lines appended to the conflist's `pluginLogFile` (stderr when it is
//! empty, `stderr` or `stdout`), filtered by `pluginLogLevel`. Never stdout: that belongs to the
//! runtime, which parses the result there; `stdout` (upstream's spelling for "the console")
//! therefore means stderr, and no file of that name is created in the runtime's directory.

use std::fs::OpenOptions;
use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

/// Log levels, least to most severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Debug.
    Debug,
    /// Info.
    Info,
    /// Warn.
    Warn,
    /// Error.
    Error,
}

impl Level {
    fn parse(s: &str) -> Level {
        match s.to_ascii_lowercase().as_str() {
            "debug" | "trace" => Level::Debug,
            "warn" | "warning" => Level::Warn,
            "error" | "fatal" => Level::Error,
            _ => Level::Info,
        }
    }
}

/// Where log lines go.
#[derive(Debug)]
pub struct Logger {
    path: Option<String>,
    min: Level,
}

impl Logger {
    /// A logger for the conflist's `pluginLogFile` / `pluginLogLevel`.
    pub fn new(file: &str, level: &str) -> Logger {
        let path = match file {
            "" | "stderr" | "stdout" => None,
            f => Some(f.to_string()),
        };
        Logger {
            path,
            min: if level.is_empty() {
                Level::Debug
            } else {
                Level::parse(level)
            },
        }
    }

    /// The file lines go to (`None`: stderr).
    pub fn file(&self) -> Option<&str> {
        self.path.as_deref()
    }

    /// Write one line (failures to log are ignored: the pod matters more than its log).
    pub fn log(&self, level: Level, msg: &str) {
        if level < self.min {
            return;
        }
        let ts = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        let line = serde_json::json!({ "ts": ts, "level": format!("{level:?}").to_lowercase(), "msg": msg });
        let text = format!("{line}\n");
        match &self.path {
            None => {
                let _ = std::io::stderr().write_all(text.as_bytes());
            }
            Some(p) => {
                if let Some(dir) = std::path::Path::new(p).parent() {
                    let _ = std::fs::create_dir_all(dir);
                }
                if let Ok(mut f) = OpenOptions::new().create(true).append(true).open(p) {
                    let _ = f.write_all(text.as_bytes());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_spellings_never_make_a_file() {
        for f in ["", "stderr", "stdout"] {
            assert_eq!(Logger::new(f, "Debug").file(), None, "{f:?}");
        }
        assert_eq!(
            Logger::new("/x/plugin.log", "").file(),
            Some("/x/plugin.log")
        );
    }
}
