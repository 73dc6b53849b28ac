//! Flags and helpers shared by the commands.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use vpc_cni_limits::{DATA_DIR_ENV, LimitsTable};

/// Where the instance-type table comes from.
#[derive(Debug, Clone, Args)]
pub struct DataArgs {
    /// Directory holding instance-limits.json and instance-vcpus.json. Default: $VPC_CNI_DATA_DIR,
    /// else /etc/vpc-cni/data, /usr/local/share/vpc-cni/data, /usr/share/vpc-cni/data, else the
    /// built-in table of common types.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

impl DataArgs {
    /// Load the table.
    pub fn table(&self) -> anyhow::Result<LimitsTable> {
        let env = std::env::var(DATA_DIR_ENV).ok();
        Ok(LimitsTable::resolve(
            self.data_dir.as_deref(),
            env.as_deref(),
        )?)
    }
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Output {
    /// Human-readable.
    #[default]
    Table,
    /// JSON on stdout.
    Json,
}

/// Print a usage error the way the calculator does (message, hint) and fail with exit code 1.
pub fn usage_error(msg: &str, command: &str) -> anyhow::Error {
    anyhow::anyhow!("{msg}\n\nUsage: vpc-cni {command} --help for every flag")
}

/// The error and its causes joined by ": ", leaving out a cause whose text the message already
/// carries (many library errors print their source in their own message).
pub fn render_error(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

/// A clap parse failure as the process's exit: help and version on stdout with 0, errors on
/// stderr with 1.
pub fn clap_exit(e: &clap::Error) -> std::process::ExitCode {
    let code = if e.use_stderr() { 1 } else { 0 };
    let _ = e.print();
    std::process::ExitCode::from(code)
}

/// A command's outcome as the process's exit: 0, or the error chain on stderr and 1.
pub fn finish(result: anyhow::Result<()>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", render_error(&e));
            std::process::ExitCode::from(1)
        }
    }
}
