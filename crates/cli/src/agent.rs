//! `aws-k8s-agent`: the daemon alone, under upstream's ipamd binary name. The same code and
//! flags as `vpc-cni daemon`, with upstream's defaults (`--cloud aws --host-network` unless
//! given), but none of the other commands linked in (emulators, simulator, planner): the node's
//! resident set holds only the daemon's code. The node entrypoint runs it when it sits beside
//! `vpc-cni`, as in the image.

#[allow(dead_code)]
mod common;
mod daemon_cmd;
mod daemon_kube;
mod resident;

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

/// Upstream's defaults when no backend is named (`--cloud aws --host-network`); flags given
/// are taken as they are. A leading `daemon` (the `vpc-cni daemon` form) is accepted.
fn with_defaults(mut argv: Vec<String>) -> Vec<String> {
    if argv.get(1).map(String::as_str) == Some("daemon") {
        argv.remove(1);
    }
    let named = argv
        .iter()
        .any(|a| a == "--cloud" || a.starts_with("--cloud="));
    let wants_help = argv
        .iter()
        .any(|a| a == "--help" || a == "-h" || a == "--version");
    if !named && !wants_help {
        argv.extend(["--cloud", "aws", "--host-network"].map(String::from));
    }
    argv
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse_from(with_defaults(std::env::args().collect())) {
        Ok(cli) => cli,
        Err(e) => return common::clap_exit(&e),
    };
    common::finish(daemon_cmd::run(cli.args))
}

#[cfg(test)]
mod tests {
    use super::with_defaults;

    #[test]
    fn upstreams_defaults_only_when_no_backend_is_named() {
        let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        for (argv, want) in [
            (v(&["a"]), v(&["a", "--cloud", "aws", "--host-network"])),
            (
                v(&["a", "daemon", "--cloud", "sim"]),
                v(&["a", "--cloud", "sim"]),
            ),
            (v(&["a", "--cloud=aws"]), v(&["a", "--cloud=aws"])),
            (v(&["a", "--help"]), v(&["a", "--help"])),
        ] {
            assert_eq!(with_defaults(argv.clone()), want, "{argv:?}");
        }
    }
}
