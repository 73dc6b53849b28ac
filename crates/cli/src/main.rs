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
mod plan_cmd;
mod simulate_cmd;

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
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 1 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
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
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", render_error(&e));
            ExitCode::from(1)
        }
    }
}

/// The error and its causes joined by ": ", leaving out a cause whose text the message already
/// carries (many library errors print their source in their own message).
fn render_error(e: &anyhow::Error) -> String {
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

#[cfg(test)]
mod tests {
    use super::render_error;

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
