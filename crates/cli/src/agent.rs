//! `aws-k8s-agent`: the daemon alone, under upstream's ipamd binary name. The same code and
//! flags as `vpc-cni daemon`, with upstream's defaults (`--cloud aws --host-network` unless
//! given), but none of the other commands linked in (emulators, simulator, planner): the node's
//! resident set holds only the daemon's code. The node entrypoint runs it when it sits beside
//! `vpc-cni`, as in the image.

#[allow(dead_code)]
mod common;
mod daemon_cmd;
mod daemon_kube;

use std::process::ExitCode;

use clap::Parser;

/// ipamd, the node IPAM daemon of vpc-cni-rs (`vpc-cni daemon` with --cloud aws
/// --host-network by default).
#[derive(Debug, Parser)]
#[command(name = "aws-k8s-agent", version, max_term_width = 100)]
struct Cli {
    #[command(flatten)]
    args: daemon_cmd::Args,
}

/// Upstream's defaults, unless the flags say otherwise.
fn with_defaults(mut argv: Vec<String>) -> Vec<String> {
    if !argv
        .iter()
        .any(|a| a == "--cloud" || a.starts_with("--cloud="))
    {
        argv.extend(["--cloud".to_string(), "aws".to_string()]);
    }
    let wants_help = argv
        .iter()
        .any(|a| a == "--help" || a == "-h" || a == "--version");
    if !wants_help && !argv.iter().any(|a| a == "--host-network") {
        argv.push("--host-network".into());
    }
    argv
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse_from(with_defaults(std::env::args().collect())) {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 1 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match daemon_cmd::run(cli.args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", common::render_error(&e));
            ExitCode::from(1)
        }
    }
}
