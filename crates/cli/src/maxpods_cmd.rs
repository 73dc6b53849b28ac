//! `vpc-cni max-pods`: the EKS `max-pods-calculator.sh`, same flags, same integer.

use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use serde::Serialize;
use vpc_cni_limits::{
    CniVersion, Formula, InstanceType, LimitsTable, MaxPods, MaxPodsOptions, max_pods,
};

use crate::common::{DataArgs, Output, usage_error};

/// Max pods for an instance type, exactly as the EKS max-pods-calculator.sh computes it:
/// ENIs × (IPv4 per ENI − 1) + 2, or with prefix delegation ENIs × ((IPv4 per ENI − 1) × 16) + 2,
/// then capped at 110 (≤ 30 vCPUs) or 250 (> 30 vCPUs). Prints one integer.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  vpc-cni max-pods --instance-type m5.large --cni-version 1.19.0\n  \
    vpc-cni max-pods --instance-type m5.large --cni-version 1.19.0 --cni-prefix-delegation-enabled\n  \
    vpc-cni max-pods --instance-type m5.large --cni-version 1.19.0 --ipv6\n  \
    vpc-cni max-pods --all --cni-version 1.19.0 --output json"
)]
pub struct Args {
    /// Instance type to calculate max pods for (e.g. m5.large).
    #[arg(long, value_name = "TYPE", required_unless_present_any = ["all", "instance_type_from_imds"])]
    instance_type: Option<String>,
    /// Read the instance type from IMDSv2 (as the calculator's --instance-type-from-imds; the
    /// endpoint follows AWS_EC2_METADATA_SERVICE_ENDPOINT).
    #[arg(long, conflicts_with_all = ["instance_type", "all"])]
    instance_type_from_imds: bool,
    /// VPC CNI version (required, as upstream): prefix delegation needs > 1.8.
    #[arg(long, value_name = "X.Y.Z", required = true)]
    cni_version: String,
    /// Custom networking: the primary ENI carries no pods (ENIs − 1).
    #[arg(long)]
    cni_custom_networking_enabled: bool,
    /// Prefix delegation: each address slot holds a /28 (16 IPs); Nitro types only.
    #[arg(long)]
    cni_prefix_delegation_enabled: bool,
    /// An IPv6 node (ENABLE_IPv6=true): its pods share one /80, so addresses never limit it;
    /// IPv6 mode requires prefix delegation, and the node gets the prefix-delegation number
    /// (what `plan --ipv6` and the daemon use). Not with custom networking (upstream refuses
    /// the pair).
    #[arg(long, conflicts_with = "cni_custom_networking_enabled")]
    ipv6: bool,
    /// Use at most N ENIs (MAX_ENI).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    cni_max_eni: Option<u32>,
    /// Print the uncapped number instead of applying the 110/250 cap.
    #[arg(long)]
    show_max_allowed: bool,
    /// Every instance type in the table: ENIs, IPs per ENI, vCPUs, secondary-IP and prefix
    /// max pods, raw and capped.
    #[arg(long, conflicts_with = "instance_type")]
    all: bool,
    /// Output format (json also gives the figures behind the number).
    #[arg(long, value_enum, default_value_t)]
    output: Output,
    #[command(flatten)]
    data: DataArgs,
}

#[derive(Serialize)]
struct Answer<'a> {
    instance_type: &'a str,
    cni_version: String,
    max_pods: u32,
    #[serde(flatten)]
    detail: MaxPods,
}

#[derive(Serialize)]
struct AllRow<'a> {
    instance_type: &'a str,
    enis: u32,
    ipv4_per_eni: u32,
    vcpus: Option<u32>,
    hypervisor: vpc_cni_limits::Hypervisor,
    secondary_ip_max_pods: u32,
    prefix_max_pods: u32,
    secondary_ip_max_pods_capped: u32,
    prefix_max_pods_capped: u32,
}

/// Run the command.
pub fn run(args: Args) -> anyhow::Result<()> {
    let version: CniVersion = args
        .cni_version
        .parse()
        .map_err(|e: vpc_cni_limits::LimitsError| usage_error(&e.to_string(), "max-pods"))?;
    let opts = MaxPodsOptions {
        cni_version: version,
        custom_networking: args.cni_custom_networking_enabled,
        prefix_delegation: args.cni_prefix_delegation_enabled || args.ipv6,
        max_eni: args.cni_max_eni,
    };
    let table = args.data.table()?;
    if args.all {
        return print_all(&table, &opts, args.output);
    }
    let from_imds = if args.instance_type_from_imds {
        Some(instance_type_from_imds()?)
    } else {
        None
    };
    let name = from_imds
        .as_deref()
        .or(args.instance_type.as_deref())
        .expect("clap requires one of --instance-type, --instance-type-from-imds, --all");
    let t = table.get(name)?;
    let mp = max_pods(t, &opts);
    if mp.vcpus_unknown && !args.show_max_allowed {
        eprintln!(
            "warning: vCPU count of {} unknown; applying the 110 cap",
            t.name
        );
    }
    let value = if args.show_max_allowed {
        mp.max_allowed
    } else {
        mp.recommended
    };
    match args.output {
        Output::Table => println!("{value}"),
        Output::Json => {
            let answer = Answer {
                instance_type: &t.name,
                cni_version: version.to_string(),
                max_pods: value,
                detail: mp,
            };
            println!("{}", serde_json::to_string_pretty(&answer)?);
        }
    }
    Ok(())
}

fn all_row<'a>(t: &'a InstanceType, opts: &MaxPodsOptions) -> AllRow<'a> {
    let sip = max_pods(
        t,
        &MaxPodsOptions {
            prefix_delegation: false,
            ..*opts
        },
    );
    let pd = max_pods(
        t,
        &MaxPodsOptions {
            prefix_delegation: true,
            ..*opts
        },
    );
    AllRow {
        instance_type: &t.name,
        enis: sip.enis,
        ipv4_per_eni: t.limits.ipv4_limit,
        vcpus: t.vcpus,
        hypervisor: t.limits.hypervisor,
        secondary_ip_max_pods: sip.max_allowed,
        prefix_max_pods: pd.max_allowed,
        secondary_ip_max_pods_capped: sip.recommended,
        prefix_max_pods_capped: pd.recommended,
    }
}

fn print_all(table: &LimitsTable, opts: &MaxPodsOptions, output: Output) -> anyhow::Result<()> {
    let rows: Vec<AllRow> = table.iter().map(|t| all_row(t, opts)).collect();
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    let mut out = Table::new();
    out.load_style(UTF8_FULL_CONDENSED).set_header(vec![
        "Instance type",
        "ENIs",
        "IPv4/ENI",
        "vCPUs",
        "Secondary-IP",
        "Prefix",
        "Secondary-IP (capped)",
        "Prefix (capped)",
    ]);
    for r in &rows {
        let pd_note = if max_pods(
            table.get(r.instance_type).expect("listed"),
            &MaxPodsOptions {
                prefix_delegation: true,
                ..*opts
            },
        )
        .formula
            == Formula::SecondaryIp
        {
            " (no PD)"
        } else {
            ""
        };
        out.add_row(vec![
            r.instance_type.to_string(),
            r.enis.to_string(),
            r.ipv4_per_eni.to_string(),
            r.vcpus.map_or("?".into(), |v| v.to_string()),
            r.secondary_ip_max_pods.to_string(),
            format!("{}{pd_note}", r.prefix_max_pods),
            r.secondary_ip_max_pods_capped.to_string(),
            r.prefix_max_pods_capped.to_string(),
        ]);
    }
    println!("{out}");
    println!("{} instance types from the {}", rows.len(), table.source());
    Ok(())
}

#[cfg(feature = "aws")]
fn instance_type_from_imds() -> anyhow::Result<String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(vpc_cni_aws::Imds::new().required("instance-type"))
        .map_err(|e| anyhow::anyhow!("--instance-type-from-imds: {}", e.message))
}

#[cfg(not(feature = "aws"))]
fn instance_type_from_imds() -> anyhow::Result<String> {
    anyhow::bail!("--instance-type-from-imds: this vpc-cni was built without the `aws` feature")
}
