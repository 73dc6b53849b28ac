//! `vpc-cni leaked-enis`: the leaked-ENI sweep of ipamd (spec i), on demand.

use anyhow::Context;

/// Lists (and with --delete, removes) ENIs the CNI created that are no longer attached: status
/// `available`, tagged node.k8s.amazonaws.com/instance_id, description `aws-K8S-…`, in this
/// instance's VPC (and cluster, when CLUSTER_NAME is set). As upstream, an ENI seen for the
/// first time is tagged node.k8s.amazonaws.com/createdAt and kept; one first seen less than 5
/// minutes ago is kept; the rest are deleted. Uses IMDS for the VPC and the SDK's environment
/// (AWS_ENDPOINT_URL_EC2, AWS_EC2_METADATA_SERVICE_ENDPOINT) for the endpoints.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Tag first sightings and delete old leaks (default: only report).
    #[arg(long)]
    delete: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    output: crate::common::Output,
}

/// Run the command.
pub fn run(args: Args) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let report = rt.block_on(async {
        let opts = vpc_cni_aws::AwsOptions {
            cluster_name: std::env::var("CLUSTER_NAME").ok().filter(|c| !c.is_empty()),
            ..Default::default()
        };
        let cloud = vpc_cni_aws::AwsCloud::connect(opts)
            .await
            .map_err(|e| anyhow::anyhow!("{}: {}", e.code, e.message))
            .context("connecting to EC2 and IMDS")?;
        let imds = vpc_cni_aws::Imds::new();
        let mac = imds
            .required("mac")
            .await
            .map_err(|e| anyhow::anyhow!(e.message))?;
        let vpc = imds
            .required(&format!("network/interfaces/macs/{mac}/vpc-id"))
            .await
            .map_err(|e| anyhow::anyhow!(e.message))?;
        cloud
            .sweep_leaked(&vpc, args.delete)
            .await
            .map_err(|e| anyhow::anyhow!("{}: {}", e.code, e.message))
    })?;
    match args.output {
        crate::common::Output::Json => println!(
            "{}",
            serde_json::json!({"deleted": report.deleted, "tagged": report.tagged, "young": report.young, "applied": args.delete})
        ),
        crate::common::Output::Table => {
            let verb = if args.delete {
                "deleted"
            } else {
                "would delete"
            };
            println!(
                "{verb}: {}",
                if report.deleted.is_empty() {
                    "-".into()
                } else {
                    report.deleted.join(", ")
                }
            );
            println!(
                "first seen now (tagged createdAt, kept): {}",
                if report.tagged.is_empty() {
                    "-".into()
                } else {
                    report.tagged.join(", ")
                }
            );
            println!(
                "younger than 5 min (kept): {}",
                if report.young.is_empty() {
                    "-".into()
                } else {
                    report.young.join(", ")
                }
            );
        }
    }
    Ok(())
}
