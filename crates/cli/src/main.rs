//! `vpc-cni`: the operator's command line for the Rust VPC CNI.

mod common;
mod daemon_cmd;
mod daemon_kube;
mod emulate_cmd;
mod emulate_k8s;
mod init_cmd;
mod inspect_cmd;
#[cfg(feature = "aws")]
mod leaked_cmd;
#[cfg(feature = "aws")]
mod limits_cmd;
mod maxpods_cmd;
mod node_cmd;
mod node_init_cmd;
mod plan_cmd;
mod probe_cmd;
mod resident;
mod simulate_cmd;
mod simulate_compare;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Tools for the Amazon VPC CNI, reimplemented in Rust: max pods per instance type and what a
/// node's warm pool will hold under given settings, computed with the same code the node runs.
#[derive(Debug, Parser)]
#[command(
    name = "vpc-cni",
    version,
    propagate_version = true,
    max_term_width = 100
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Max pods per instance type: a drop-in for the EKS max-pods-calculator.sh.
    MaxPods(maxpods_cmd::Args),
    /// What a node will hold (ENIs, IPs or prefixes, unused addresses) as pods are added.
    Plan(plan_cmd::Args),
    /// Run a cluster scenario in virtual time against the simulated VPC.
    Simulate(simulate_cmd::Args),
    /// Run ipamd, the node IPAM daemon (embedded simulated VPC by default).
    Daemon(daemon_cmd::Args),
    /// Serve a simulated VPC over the EC2 Query API and IMDSv2 on loopback, for any AWS SDK.
    Emulate(emulate_cmd::Args),
    /// Find (and with --delete remove) ENIs the CNI created that are no longer attached.
    #[cfg(feature = "aws")]
    LeakedEnis(leaked_cmd::Args),
    /// The instance table: `limits sync` builds it from EC2 DescribeInstanceTypes.
    #[cfg(feature = "aws")]
    Limits(limits_cmd::Args),
    /// Install the plugin and, once ipamd is healthy, the CNI network configuration.
    Init(init_cmd::Args),
    /// Show a running daemon's ENIs, addresses, assignments and pool state.
    Inspect(inspect_cmd::Args),
    /// The node image's entrypoint (as /app/aws-vpc-cni): install aws-cni, run the daemon, write
    /// the conflist once it is healthy, exit with it.
    Node(node_cmd::Args),
    /// The init image's entrypoint (as /init/aws-vpc-cni-init): copy the CNI plugins to the
    /// host, set the node's sysctls.
    NodeInit(node_init_cmd::Args),
    /// gRPC health check with grpc-health-probe's flags and exit codes (as
    /// /app/grpc-health-probe): `vpc-cni health-probe -addr=unix:///var/run/aws-node/ipamd.sock`.
    HealthProbe(ProbeArgs),
}

/// The probe's own Go-style flags, passed through.
#[derive(Debug, clap::Args)]
struct ProbeArgs {
    /// grpc-health-probe flags: -addr=ADDR [-service=NAME] [-connect-timeout=5s] [-rpc-timeout=5s].
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
    flags: Vec<String>,
}

/// The path this program was started as (a link's own path, not its target's): the init
/// entrypoint copies the files beside it.
pub static INVOKED_AS: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// The program names of upstream's image paths, each a command of this one binary: a link
/// named like that (`/app/aws-vpc-cni` → `vpc-cni`) runs it.
fn dispatch_by_name(argv: Vec<String>) -> Vec<String> {
    let name = argv
        .first()
        .map(|a| a.rsplit('/').next().unwrap_or(a).to_string())
        .unwrap_or_default();
    let rest = argv.iter().skip(1).cloned();
    let head: &[&str] = match name.as_str() {
        "aws-vpc-cni" => &["vpc-cni", "node"],
        "aws-vpc-cni-init" => &["vpc-cni", "node-init"],
        "grpc-health-probe" => &["vpc-cni", "health-probe"],
        // Upstream's ipamd binary: the daemon on EC2 with the node's networking.
        "aws-k8s-agent" => &["vpc-cni", "daemon", "--cloud", "aws", "--host-network"],
        _ => return argv,
    };
    head.iter().map(|s| s.to_string()).chain(rest).collect()
}

fn main() -> ExitCode {
    let raw: Vec<String> = std::env::args().collect();
    if let Some(a0) = raw.first() {
        let _ = INVOKED_AS.set(PathBuf::from(a0));
    }
    let argv = dispatch_by_name(raw);
    if argv.get(1).map(String::as_str) == Some("health-probe") {
        return ExitCode::from(probe_cmd::run(&argv[2..]));
    }
    let cli = match Cli::try_parse_from(argv) {
        Ok(cli) => cli,
        Err(e) => return common::clap_exit(&e),
    };
    let result = match cli.command {
        Command::MaxPods(args) => maxpods_cmd::run(args),
        Command::Plan(args) => plan_cmd::run(args),
        Command::Simulate(args) => simulate_cmd::run(args),
        Command::Daemon(args) => daemon_cmd::run(args),
        Command::Inspect(args) => inspect_cmd::run(args),
        Command::Init(args) => init_cmd::run(args),
        Command::Emulate(args) => emulate_cmd::run(args),
        #[cfg(feature = "aws")]
        Command::Limits(args) => limits_cmd::run(args),
        #[cfg(feature = "aws")]
        Command::LeakedEnis(args) => leaked_cmd::run(args),
        Command::NodeInit(args) => node_init_cmd::run(args),
        Command::Node(args) => match node_cmd::run(args) {
            Ok(code) => return code,
            Err(e) => Err(e),
        },
        // Handled above, before clap.
        Command::HealthProbe(args) => return ExitCode::from(probe_cmd::run(&args.flags)),
    };
    common::finish(result)
}

#[cfg(test)]
mod tests {
    use super::common::render_error;
    use super::dispatch_by_name;

    #[test]
    fn upstreams_program_names_run_their_commands() {
        let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        for (argv, want) in [
            (v(&["/app/aws-vpc-cni"]), v(&["vpc-cni", "node"])),
            (v(&["/init/aws-vpc-cni-init"]), v(&["vpc-cni", "node-init"])),
            (
                v(&["/app/grpc-health-probe", "-addr=:1"]),
                v(&["vpc-cni", "health-probe", "-addr=:1"]),
            ),
            (
                v(&["aws-k8s-agent"]),
                v(&["vpc-cni", "daemon", "--cloud", "aws", "--host-network"]),
            ),
            (v(&["vpc-cni", "plan"]), v(&["vpc-cni", "plan"])),
        ] {
            assert_eq!(dispatch_by_name(argv.clone()), want, "{argv:?}");
        }
    }

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        let io = std::io::Error::other("Address already in use");
        let e = anyhow::Error::new(io).context("binding introspection: Address already in use");
        assert_eq!(
            render_error(&e),
            "binding introspection: Address already in use"
        );
        let e = anyhow::anyhow!("port taken").context("starting the daemon");
        assert_eq!(render_error(&e), "starting the daemon: port taken");
    }
}
