//! The `aws-cni` plugin: the CNI commands (ADD, DEL, CHECK, VERSION, STATUS, GC) over the
//! daemon's gRPC socket and the pod dataplane, plus the process entry point [`run`] that reads
//! stdin and `CNI_*` and writes the result or error document to stdout.

pub mod cmd;
#[cfg(test)]
mod cmd_tests;
pub mod egress;
pub mod grpc;
pub mod ipamd;
pub mod log;

use std::io::Read;

use vpc_cni_cni::{CniEnv, CniError, Code, Command, NetConf};
use vpc_cni_dataplane::pod::Netlink;

use crate::cmd::Ctx;
use crate::ipamd::{DEFAULT_SOCKET, UdsIpamd};
use crate::log::{Level, Logger};

/// Version reported when stdin gives none.
const FALLBACK_VERSION: &str = "1.1.0";

/// What the process prints and how it exits.
#[derive(Debug)]
pub struct Outcome {
    /// stdout text (may be empty).
    pub stdout: String,
    /// Exit code.
    pub code: u8,
}

pub(crate) fn stdin_version(stdin: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(stdin)
        .ok()
        .and_then(|v| v["cniVersion"].as_str().map(str::to_string))
        .unwrap_or_else(|| FALLBACK_VERSION.to_string())
}

pub(crate) fn fail(e: CniError, version: &str) -> Outcome {
    Outcome {
        stdout: e.to_json(version),
        code: 1,
    }
}

/// The socket of ipamd: the netconf's `ipamdSocket`, else `VPC_CNI_IPAMD_SOCKET`, else the default.
fn socket(stdin: &[u8], env: &dyn Fn(&str) -> Option<String>) -> String {
    serde_json::from_slice::<serde_json::Value>(stdin)
        .ok()
        .and_then(|v| v["ipamdSocket"].as_str().map(str::to_string))
        .or_else(|| env("VPC_CNI_IPAMD_SOCKET"))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| DEFAULT_SOCKET.to_string())
}

/// Run one plugin invocation.
pub fn run(env: &dyn Fn(&str) -> Option<String>, stdin: &[u8]) -> Outcome {
    let version = stdin_version(stdin);
    let cni_env = match CniEnv::from_lookup(env) {
        Ok(e) => e,
        Err(e) => return fail(e, &version),
    };
    if cni_env.command == Command::Version {
        return Outcome {
            stdout: vpc_cni_cni::version_result(&version).to_string(),
            code: 0,
        };
    }
    let conf = match NetConf::parse(stdin) {
        Ok(c) => c,
        Err(e) => return fail(e, &version),
    };
    let log = Logger::new(&conf.plugin_log_file, &conf.plugin_log_level);
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            return fail(
                CniError::new(Code::Internal, format!("tokio runtime: {e}")),
                &version,
            );
        }
    };
    let ipamd = UdsIpamd::new(socket(stdin, env));
    let ctx = Ctx {
        conf: &conf,
        env: &cni_env,
        ipamd: &ipamd,
        net: &Netlink,
        log: &log,
    };
    let result = rt.block_on(async {
        match cni_env.command {
            Command::Add => ctx.add().await.map(|v| v.to_string()),
            Command::Del => ctx.del().await.map(|()| String::new()),
            Command::Check => ctx.check().await.map(|()| String::new()),
            Command::Status => ctx.status().await.map(|()| String::new()),
            Command::Gc => ctx.gc().await.map(|()| String::new()),
            Command::Version => Ok(String::new()),
        }
    });
    match result {
        Ok(stdout) => Outcome { stdout, code: 0 },
        Err(e) => {
            log.log(
                Level::Error,
                &format!("{:?} {}: {e}", cni_env.command, cni_env.container_id),
            );
            fail(e, &conf.cni_version)
        }
    }
}

/// Read all of stdin (empty when there is none).
pub fn read_stdin() -> Vec<u8> {
    let mut buf = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut buf);
    buf
}
