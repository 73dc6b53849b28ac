//! `vpc-cni limits sync`: build the instance table from EC2 DescribeInstanceTypes.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;

/// Instance-table commands.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: LimitsCommand,
}

#[derive(Debug, clap::Subcommand)]
enum LimitsCommand {
    /// Build instance-limits.json and instance-vcpus.json (the --data-dir schema) from EC2
    /// DescribeInstanceTypes in each region (every page), merged; eni_limit is the default network
    /// card's ENI count, as max pods uses. Credentials and endpoints come from the AWS SDK's
    /// environment (AWS_ENDPOINT_URL_EC2 points it at an emulator or moto).
    Sync(SyncArgs),
}

#[derive(Debug, clap::Args)]
struct SyncArgs {
    /// Regions to query, comma-separated (a type offered in several keeps the first answer).
    #[arg(long, value_delimiter = ',', required = true)]
    regions: Vec<String>,
    /// Directory to write the two files into (created if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

/// Run the command.
pub fn run(args: Args) -> anyhow::Result<()> {
    let LimitsCommand::Sync(a) = args.command;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let merged = rt
        .block_on(vpc_cni_aws::limits_sync::sync_regions(
            &a.regions,
            |region, n| eprint!("\r{region}: {n} types "),
        ))
        .map_err(|e| anyhow::anyhow!("{}: {}", e.code, e.message))?;
    eprintln!();
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let limits: BTreeMap<&String, _> = merged.iter().map(|(k, v)| (k, &v.limits)).collect();
    let vcpus: BTreeMap<&String, u32> = merged
        .iter()
        .filter_map(|(k, v)| v.vcpus.map(|c| (k, c)))
        .collect();
    for (name, text) in [
        (
            vpc_cni_limits::LIMITS_FILE,
            serde_json::to_string_pretty(&limits)?,
        ),
        (
            vpc_cni_limits::VCPUS_FILE,
            serde_json::to_string_pretty(&vcpus)?,
        ),
    ] {
        let path = a.out.join(name);
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, format!("{text}\n"))
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path)
            .with_context(|| format!("renaming into {}", path.display()))?;
    }
    println!(
        "{} instance types ({} with vCPUs) written to {}",
        merged.len(),
        vcpus.len(),
        a.out.display()
    );
    Ok(())
}
