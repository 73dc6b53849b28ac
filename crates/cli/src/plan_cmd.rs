//! `vpc-cni plan`: what a node will hold as pods are added, under given settings.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use ipnet::Ipv4Net;
use vpc_cni_ipam::Settings;
use vpc_cni_ipam::settings as env;
use vpc_cni_limits::{CniVersion, MaxPodsOptions, max_pods};
use vpc_cni_planner::{PlanReport, PlanRequest, SubnetQuestion, plan};

use crate::common::{DataArgs, Output};

/// Runs the upstream warm-pool policy (the code ipamd runs) to a fixed point on an ideal cloud
/// while pods are added one at a time, and shows ENIs, attached IPs or prefixes and unused
/// addresses at each requested pod count. Settings come from flags, or from the upstream env
/// var names (--from-env, --env-file); flags win.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  vpc-cni plan --instance-type r5.xlarge --pods 1,14,15\n  \
    vpc-cni plan --instance-type r5.xlarge --minimum-ip-target 20 --warm-ip-target 5 --pods 1,16,24\n  \
    vpc-cni plan --instance-type m5.large --prefix-delegation --warm-prefix-target 1 \\\n      \
    --minimum-ip-target 25 --warm-ip-target 5 --pods 25,37 --nodes 10 --subnet 10.0.0.0/24\n  \
    vpc-cni plan --instance-type m5.xlarge --pods 44 --nodes 40 --subnet 10.0.0.0/26 \\\n      \
    --pod-subnet 100.64.0.0/21\n  \
    WARM_IP_TARGET=2 MINIMUM_IP_TARGET=20 vpc-cni plan --from-env --instance-type r5.xlarge"
)]
pub struct Args {
    /// Instance type of the node (e.g. m5.large).
    #[arg(long, value_name = "TYPE")]
    instance_type: String,
    /// ENABLE_PREFIX_DELEGATION=true: hand out addresses from /28 prefixes (Nitro only).
    #[arg(long)]
    prefix_delegation: bool,
    /// WARM_ENI_TARGET: keep this many ENIs' worth of free IPs (default 1).
    #[arg(long, value_name = "N")]
    warm_eni_target: Option<u32>,
    /// WARM_IP_TARGET: keep this many free IPs (overrides the ENI/prefix targets).
    #[arg(long, value_name = "N")]
    warm_ip_target: Option<u32>,
    /// MINIMUM_IP_TARGET: never hold fewer IPs than this.
    #[arg(long, value_name = "N")]
    minimum_ip_target: Option<u32>,
    /// WARM_PREFIX_TARGET: keep this many free /28 prefixes (prefix mode; 1 if no target given).
    #[arg(long, value_name = "N")]
    warm_prefix_target: Option<u32>,
    /// MAX_ENI: use at most N ENIs.
    #[arg(long, value_name = "N")]
    max_eni: Option<u32>,
    /// AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG=true: no pod addresses on the primary ENI.
    #[arg(long)]
    custom_networking: bool,
    /// ENABLE_IPv6=true (implies --prefix-delegation): pods take addresses of the primary ENI's
    /// /80, so the subnet's IPv4 range holds one address per node.
    #[arg(long, conflicts_with_all = ["custom_networking", "pod_subnet"])]
    ipv6: bool,
    /// VPC_CNI_POOL_POLICY: `aws` (upstream's warm targets, the default) or `adaptive` (sized
    /// from observed arrivals; the plan shows where it settles once arrivals stop).
    #[arg(long, value_name = "POLICY")]
    policy: Option<String>,
    /// IP_COOLDOWN_PERIOD in seconds (matters when --pods goes down).
    #[arg(long, value_name = "SECONDS")]
    ip_cooldown_period: Option<u32>,
    /// Pod counts to report, visited in order (down moves release pods).
    /// Default: 0, 1, 5, 10, 20, 30, 50, 100, 250 up to max pods.
    #[arg(long, value_name = "N,N,…", value_delimiter = ',')]
    pods: Vec<u32>,
    /// Read settings from the upstream env var names in this process's environment.
    #[arg(long)]
    from_env: bool,
    /// Read settings from a file: KEY=VALUE lines, or the JSON list of a DaemonSet's env
    /// (kubectl get ds aws-node -n kube-system -o jsonpath='{.spec.template.spec.containers[0].env}').
    #[arg(long, value_name = "FILE")]
    env_file: Option<PathBuf>,
    /// Node pod capacity (kubelet max-pods). Default: what the EKS AMI configures: the
    /// secondary-IP formula, or the calculator's capped value with prefix delegation.
    #[arg(long, value_name = "N")]
    max_pods: Option<u32>,
    /// Nodes in the group (with --subnet).
    #[arg(long, value_name = "N", requires = "subnet")]
    nodes: Option<u32>,
    /// Subnet the node group uses (with --nodes): does it fit?
    #[arg(long, value_name = "CIDR", requires = "nodes")]
    subnet: Option<Ipv4Net>,
    /// Custom networking's pod subnet (the ENIConfig's; implies --custom-networking, with
    /// --subnet and --nodes): the node subnet then holds one address per node, this one the rest.
    #[arg(long, value_name = "CIDR", requires = "subnet")]
    pod_subnet: Option<Ipv4Net>,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    output: Output,
    #[command(flatten)]
    data: DataArgs,
}

/// Parse an env file: `KEY=VALUE` lines (`export` and quotes allowed) or a JSON `[{name, value}]`.
fn read_env_file(path: &PathBuf) -> anyhow::Result<BTreeMap<String, String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    if text.trim_start().starts_with('[') {
        let items: Vec<serde_json::Value> = serde_json::from_str(&text).with_context(|| {
            format!(
                "{}: expected a JSON list of {{\"name\", \"value\"}}",
                path.display()
            )
        })?;
        return Ok(items
            .iter()
            .filter_map(|i| {
                Some((
                    i.get("name")?.as_str()?.to_string(),
                    i.get("value")?.as_str()?.to_string(),
                ))
            })
            .collect());
    }
    let mut map = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let (k, v) = line.split_once('=').with_context(|| {
            format!(
                "{}:{}: expected KEY=VALUE, got {line:?}",
                path.display(),
                n + 1
            )
        })?;
        map.insert(
            k.trim().to_string(),
            v.trim().trim_matches('"').trim_matches('\'').to_string(),
        );
    }
    Ok(map)
}

fn settings(args: &Args, notes: &mut Vec<String>) -> anyhow::Result<Settings> {
    let mut map = BTreeMap::new();
    if args.from_env {
        for var in env::VARIABLES {
            if let Ok(v) = std::env::var(var) {
                map.insert(var.to_string(), v);
            }
        }
    }
    if let Some(path) = &args.env_file {
        map.extend(read_env_file(path)?);
    }
    let mut set = |var: &str, v: Option<String>| {
        if let Some(v) = v {
            map.insert(var.to_string(), v);
        }
    };
    set(
        env::WARM_ENI_TARGET,
        args.warm_eni_target.map(|v| v.to_string()),
    );
    set(
        env::WARM_IP_TARGET,
        args.warm_ip_target.map(|v| v.to_string()),
    );
    set(
        env::MINIMUM_IP_TARGET,
        args.minimum_ip_target.map(|v| v.to_string()),
    );
    set(
        env::WARM_PREFIX_TARGET,
        args.warm_prefix_target.map(|v| v.to_string()),
    );
    set(env::MAX_ENI, args.max_eni.map(|v| v.to_string()));
    set(env::POOL_POLICY, args.policy.clone());
    set(
        env::IP_COOLDOWN_PERIOD,
        args.ip_cooldown_period.map(|v| v.to_string()),
    );
    set(
        env::ENABLE_PREFIX_DELEGATION,
        (args.prefix_delegation || args.ipv6).then(|| "true".into()),
    );
    set(
        env::CUSTOM_NETWORK_CFG,
        (args.custom_networking || args.pod_subnet.is_some()).then(|| "true".into()),
    );
    let pd_from_flag = args.prefix_delegation || args.ipv6;
    let no_target = [
        env::WARM_PREFIX_TARGET,
        env::WARM_IP_TARGET,
        env::MINIMUM_IP_TARGET,
    ]
    .iter()
    .all(|k| !map.contains_key(*k));
    let adaptive = map
        .get(env::POOL_POLICY)
        .is_some_and(|p| p.trim().eq_ignore_ascii_case("adaptive"));
    if pd_from_flag && no_target && !adaptive {
        map.insert(env::WARM_PREFIX_TARGET.into(), "1".into());
        notes.push("WARM_PREFIX_TARGET=1 assumed (the shipped aws-node manifest's value)".into());
    }
    Ok(Settings::from_map(&map)?)
}

fn default_pods(max_pods: u32) -> Vec<u32> {
    let cap = max_pods.saturating_sub(vpc_cni_limits::HOST_NETWORK_PODS);
    let mut v: Vec<u32> = [0, 1, 5, 10, 20, 30, 50, 100, 250]
        .into_iter()
        .filter(|&p| p < cap)
        .collect();
    v.push(cap);
    v
}

/// Run the command.
pub fn run(args: Args) -> anyhow::Result<()> {
    let table = args.data.table()?;
    let instance = table.get(&args.instance_type)?.clone();
    let mut notes = Vec::new();
    let settings = settings(&args, &mut notes)?;
    let max_pods = args.max_pods.unwrap_or_else(|| {
        let opts = MaxPodsOptions {
            cni_version: CniVersion {
                major: 1,
                minor: 19,
            },
            custom_networking: settings.custom_networking,
            prefix_delegation: settings.prefix_delegation,
            max_eni: settings.max_eni,
        };
        let mp = max_pods(&instance, &opts);
        if settings.prefix_delegation {
            mp.recommended
        } else {
            mp.max_allowed
        }
    });
    let pods = if args.pods.is_empty() {
        default_pods(max_pods)
    } else {
        args.pods.clone()
    };
    let subnet = match (args.nodes, args.subnet) {
        (Some(nodes), Some(cidr)) => Some(SubnetQuestion {
            nodes,
            cidr,
            pod_cidr: args.pod_subnet,
        }),
        _ => None,
    };
    let req = PlanRequest {
        instance,
        settings,
        max_pods,
        pods,
        subnet,
        ipv6: args.ipv6,
    };
    let mut report = plan(&req)?;
    report.notes.splice(0..0, notes);
    match args.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Output::Table => print_table(&report),
    }
    Ok(())
}

fn print_table(r: &PlanReport) {
    let pd = r.mode == "prefix";
    let targets: Vec<String> = r
        .settings
        .iter()
        .filter(|(k, v)| !matches!(v.as_str(), "0" | "false") && **k != env::IP_COOLDOWN_PERIOD)
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    println!(
        "{} · {} mode · max pods {} · {}",
        r.instance_type,
        r.mode,
        r.max_pods,
        targets.join(" ")
    );
    let mut t = Table::new();
    let mut header = vec!["Pods", "ENIs"];
    if pd {
        header.push("Prefixes");
    }
    header.extend([
        "IPs attached",
        "Unused IPs",
        "Subnet addrs",
        "Per ENI (pods/IPs)",
    ]);
    t.load_style(UTF8_FULL_CONDENSED).set_header(header);
    for row in &r.rows {
        let per_eni: Vec<String> = row
            .per_eni
            .iter()
            .map(|e| {
                if pd {
                    format!("{}/{} ({}p)", e.pods, e.ips, e.prefixes)
                } else {
                    format!("{}/{}", e.pods, e.ips)
                }
            })
            .collect();
        let pods = if row.pending_pods > 0 {
            format!("{} ({} pending)", row.pods, row.pending_pods)
        } else {
            row.pods.to_string()
        };
        let mut cells = vec![pods, row.enis.to_string()];
        if pd {
            cells.push(row.prefixes.to_string());
        }
        cells.extend([
            row.ips_attached.to_string(),
            row.unused_ips.to_string(),
            row.subnet_addresses.to_string(),
            per_eni.join(" · "),
        ]);
        t.add_row(cells);
    }
    println!("{t}");
    if let Some(last) = r.rows.last() {
        println!("Last step ({} pods): {}", last.pods, last.rule);
    }
    for (what, s) in [("Subnet", &r.subnet), ("Pod subnet", &r.pod_subnet)] {
        if let Some(s) = s {
            println!(
                "{what} {} with {} nodes at {} pods each: {}",
                s.cidr, s.nodes, s.pods_per_node, s.verdict
            );
        }
    }
    for n in &r.notes {
        println!("Note: {n}");
    }
}
