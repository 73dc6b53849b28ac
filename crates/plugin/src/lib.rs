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

/// What every plugin binary does first: read `CNI_*` and answer VERSION. `Ok` carries the
/// version to report errors in and the environment; `Err` is the finished outcome.
pub(crate) fn begin(
    env: &dyn Fn(&str) -> Option<String>,
    stdin: &[u8],
) -> Result<(String, CniEnv), Outcome> {
    let version = stdin_version(stdin);
    let cni_env = CniEnv::from_lookup(env).map_err(|e| fail(e, &version))?;
    if cni_env.command == Command::Version {
        return Err(Outcome {
            stdout: vpc_cni_cni::version_result(&version).to_string(),
            code: 0,
        });
    }
    Ok((version, cni_env))
}

/// The single-threaded runtime a command runs on.
pub(crate) fn runtime(version: &str) -> Result<tokio::runtime::Runtime, Outcome> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            fail(
                CniError::new(Code::Internal, format!("tokio runtime: {e}")),
                version,
            )
        })
}

/// A command's result as the process's outcome; an error is logged first.
pub(crate) fn finish(
    result: Result<String, CniError>,
    log: &Logger,
    env: &CniEnv,
    cni_version: &str,
) -> Outcome {
    match result {
        Ok(stdout) => Outcome { stdout, code: 0 },
        Err(e) => {
            log.log(
                Level::Error,
                &format!("{:?} {}: {e}", env.command, env.container_id),
            );
            fail(e, cni_version)
        }
    }
}

/// Run one plugin invocation.
pub fn run(env: &dyn Fn(&str) -> Option<String>, stdin: &[u8]) -> Outcome {
    let (version, cni_env) = match begin(env, stdin) {
        Ok(v) => v,
        Err(done) => return done,
    };
    let conf = match NetConf::parse(stdin) {
        Ok(c) => c,
        Err(e) => return fail(e, &version),
    };
    let log = Logger::new(&conf.plugin_log_file, &conf.plugin_log_level);
    let rt = match runtime(&version) {
        Ok(rt) => rt,
        Err(done) => return done,
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
    finish(result, &log, &cni_env, &conf.cni_version)
}

/// Read all of stdin (empty when there is none).
pub fn read_stdin() -> Vec<u8> {
    let mut buf = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut buf);
    buf
}
