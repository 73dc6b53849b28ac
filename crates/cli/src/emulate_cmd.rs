//! `vpc-cni emulate`: the simulated VPC on loopback over the EC2 Query API and IMDSv2.

use std::net::SocketAddr;

use anyhow::{Context, bail};
use ipnet::Ipv4Net;
use vpc_cni_emulator::{EmulatorConfig, start};

use crate::common::DataArgs;

/// Serves a simulated VPC on loopback: the EC2 Query API (the actions the VPC CNI uses, with
/// EC2's XML answers, error documents and pagination) on --ec2-addr, and IMDSv2 for each
/// simulated instance on --imds-addr (consecutive ports). Point any AWS SDK at it:
///
///   AWS_ENDPOINT_URL_EC2=http://127.0.0.1:8787 AWS_EC2_METADATA_SERVICE_ENDPOINT=http://127.0.0.1:8788
///   AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=x AWS_REGION=us-east-1
///
/// The simulated VPC's throttling (AWS's token buckets), latencies (--latency-scale) and faults
/// (--error-rate, --throttle-rate) apply. Runs until SIGTERM or Ctrl-C.
///
/// With --kubernetes it also serves the part of the Kubernetes API vpc-cni uses (discovery,
/// /version, nodes, pods, events, CRDs with ENIConfig and CNINode; get, list, watch, create,
/// update, patch, delete; bearer-token auth) on --k8s-addr, registers one Node per simulated
/// instance (named after its private DNS name, capacity.pods from the max-pods table, as
/// kubelet does) and writes a kubeconfig for kubectl and other clients:
///
///   vpc-cni emulate --kubernetes --kubeconfig /tmp/emu.kubeconfig &
///   KUBECONFIG=/tmp/emu.kubeconfig kubectl get nodes
///
/// Faults of the Kubernetes side: PUT /_emulator/faults {"error_rate":0.2,"latency_ms":50,
/// "conflicts":1,"unauthorized":false} (with the token).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Instance type of a simulated instance; repeat for several instances.
    #[arg(long = "instance-type", default_value = "m5.large")]
    instance_types: Vec<String>,
    /// Subnet (and VPC) CIDR.
    #[arg(long, default_value = "10.0.0.0/20")]
    subnet: Ipv4Net,
    /// A further subnet instances are placed in (round-robin with --subnet), as CIDR@ZONE:
    /// ZONE is a letter (b: <region>b) or a zone name. Repeat for several. Subnet IDs follow the
    /// order given: subnet-0emu is --subnet, then the --node-subnet ones, then --pod-subnet.
    #[arg(long = "node-subnet", value_name = "CIDR@ZONE")]
    node_subnets: Vec<String>,
    /// A pod subnet for custom networking (ENIConfig), holding no instance, as CIDR@ZONE (e.g.
    /// 100.64.0.0/24@a); its block joins the VPC's. Repeat for several.
    #[arg(long = "pod-subnet", value_name = "CIDR@ZONE")]
    pod_subnets: Vec<String>,
    /// A security group that exists besides the VPC's default sg-0sim (ENIConfigs may name it;
    /// an unknown group fails with InvalidGroup.NotFound). Repeat for several.
    #[arg(long = "security-group", value_name = "ID")]
    security_groups: Vec<String>,
    /// Seed of the simulated VPC.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// EC2 listener (loopback only; port 0 picks one).
    #[arg(long, default_value = "127.0.0.1:8787")]
    ec2_addr: SocketAddr,
    /// IMDS listener of the first instance; the next instances use the following ports.
    #[arg(long, default_value = "127.0.0.1:8788")]
    imds_addr: SocketAddr,
    /// Scale of the simulated latencies actually waited (1 = realistic, 0 = none).
    #[arg(long, default_value_t = 1.0)]
    latency_scale: f64,
    /// Probability that an EC2 call fails with an injected InternalError.
    #[arg(long, default_value_t = 0.0)]
    error_rate: f64,
    /// Probability that an EC2 call is refused with an injected RequestLimitExceeded (on top of
    /// the token buckets).
    #[arg(long, default_value_t = 0.0)]
    throttle_rate: f64,
    /// IPv6 block of a dual-stack VPC (e.g. 2001:db8:1200::/56): the subnet gets its first /64,
    /// instances one IPv6 address each, and AssignIpv6Addresses / UnassignIpv6Addresses and the
    /// IMDS IPv6 paths (ipv6, ipv6s, ipv6-prefix, …) answer.
    #[arg(long, value_name = "CIDR")]
    ipv6_cidr: Option<ipnet::Ipv6Net>,
    /// Region IMDS reports.
    #[arg(long, default_value = "us-east-1")]
    region: String,
    /// Print the endpoints as one JSON line instead of shell exports.
    #[arg(long, value_enum, default_value = "table")]
    output: crate::common::Output,
    /// Refuse this EC2 action with UnauthorizedOperation, as a missing IAM permission does
    /// (e.g. --deny-action CreateNetworkInterface); repeat for several.
    #[arg(long, value_name = "ACTION")]
    deny_action: Vec<String>,
    /// Also serve the Kubernetes API (see above).
    #[arg(long)]
    kubernetes: bool,
    /// Serve only the Kubernetes API: no EC2, no IMDS, no Nodes registered.
    #[arg(long)]
    kubernetes_only: bool,
    /// Kubernetes API listener (loopback only; port 0 picks one).
    #[arg(long, default_value = "127.0.0.1:8790")]
    k8s_addr: SocketAddr,
    /// Where to write the kubeconfig (default: vpc-cni-emulator.kubeconfig in the temporary
    /// directory).
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<std::path::PathBuf>,
    /// Bearer token clients must present (default: a random one, in the kubeconfig).
    #[arg(long)]
    k8s_token: Option<String>,
    /// Keep the Kubernetes API's certificate and key here (tls.crt, tls.key), reused when
    /// present: a restarted emulator with the same --k8s-token keeps kubeconfigs valid.
    #[arg(long, value_name = "DIR")]
    k8s_tls_dir: Option<std::path::PathBuf>,
    #[command(flatten)]
    data: DataArgs,
}

/// Run the command.
pub fn run(args: Args) -> anyhow::Result<()> {
    for (flag, a) in [
        ("--ec2-addr", args.ec2_addr),
        ("--imds-addr", args.imds_addr),
        ("--k8s-addr", args.k8s_addr),
    ] {
        if !a.ip().is_loopback() {
            bail!(
                "{flag} {a}: the emulator listens on loopback only (e.g. 127.0.0.1:{})",
                a.port()
            );
        }
    }
    for (flag, p) in [
        ("--error-rate", args.error_rate),
        ("--throttle-rate", args.throttle_rate),
    ] {
        if !(0.0..=1.0).contains(&p) {
            bail!("{flag} {p}: expected a probability from 0 to 1");
        }
    }
    let table = args.data.table()?;
    let instances = args
        .instance_types
        .iter()
        .map(|t| table.get(t).cloned())
        .collect::<Result<Vec<_>, _>>()?;
    let mut extra_subnets = Vec::new();
    for (flag, list, pod_only) in [
        ("--node-subnet", &args.node_subnets, false),
        ("--pod-subnet", &args.pod_subnets, true),
    ] {
        for v in list {
            extra_subnets.push(subnet_spec(flag, v, &args.region, pod_only)?);
        }
    }
    for g in &args.security_groups {
        if !g.starts_with("sg-") || g.len() < 4 {
            bail!("--security-group {g}: expected a security group ID (sg-…)");
        }
    }
    let cfg = EmulatorConfig {
        instances,
        subnet: args.subnet,
        extra_subnets,
        security_groups: args.security_groups.clone(),
        seed: args.seed,
        latency_scale: args.latency_scale,
        error_rate: args.error_rate,
        throttle_rate: args.throttle_rate,
        ipv6_cidr: args.ipv6_cidr,
        region: args.region.clone(),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let k8s = if args.kubernetes || args.kubernetes_only {
            Some(
                crate::emulate_k8s::start(
                    &args.k8s_addr,
                    args.kubeconfig.clone(),
                    args.k8s_token.clone(),
                    args.k8s_tls_dir.as_deref(),
                )
                .await?,
            )
        } else {
            None
        };
        let mut k8s = k8s;
        let r = if args.kubernetes_only {
            None
        } else {
            let r = start(&cfg, args.ec2_addr, args.imds_addr)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))
                .context("starting the emulator")?;
            r.shared.vpc.lock().expect("emulator state").denied =
                args.deny_action.iter().cloned().collect();
            if let Some(k) = k8s.as_mut() {
                crate::emulate_k8s::register_nodes(k, &r, &table, &args.region)?;
            }
            Some(r)
        };
        print_endpoints(&args, r.as_ref(), k8s.as_ref());
        use std::io::Write;
        std::io::stdout().flush()?;
        let _keep = (r, k8s);
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        Ok(())
    })
}

/// `CIDR@ZONE` of --node-subnet / --pod-subnet.
fn subnet_spec(
    flag: &str,
    v: &str,
    region: &str,
    pod_only: bool,
) -> anyhow::Result<vpc_cni_emulator::SubnetSpec> {
    let expected = "expected CIDR@ZONE, e.g. 100.64.0.0/24@b (ZONE: a letter or a zone name)";
    let (cidr, zone) = v
        .split_once('@')
        .with_context(|| format!("{flag} {v}: {expected}"))?;
    let cidr: Ipv4Net = cidr
        .parse()
        .map_err(|e| anyhow::anyhow!("{flag} {v}: {cidr}: {e}; {expected}"))?;
    let zone = match zone {
        z if z.len() == 1 && z.chars().all(|c| c.is_ascii_lowercase()) => format!("{region}{z}"),
        z if z.starts_with(region) && z.len() > region.len() => z.to_string(),
        z => bail!("{flag} {v}: zone {z:?} is not in region {region}; {expected}"),
    };
    Ok(vpc_cni_emulator::SubnetSpec {
        cidr: cidr.trunc(),
        zone,
        pod_only,
    })
}

/// The subnets as (ID, CIDR, zone, role).
fn subnets(r: &vpc_cni_emulator::Running) -> Vec<(String, String, String, &'static str)> {
    let vpc = r.shared.vpc.lock().expect("emulator state");
    let homes: std::collections::BTreeSet<String> = r
        .imds
        .iter()
        .filter_map(|(id, _)| vpc.instance(id).map(|i| i.subnet_id.clone()))
        .collect();
    vpc.subnets
        .values()
        .map(|s| {
            let role = if homes.contains(&s.id) {
                "nodes"
            } else {
                "pods"
            };
            (s.id.clone(), s.cidr.to_string(), s.az.clone(), role)
        })
        .collect()
}

/// The endpoints, as shell exports or one JSON line.
fn print_endpoints(
    args: &Args,
    r: Option<&vpc_cni_emulator::Running>,
    k8s: Option<&crate::emulate_k8s::K8s>,
) {
    let k8s_json = k8s.map(|k| {
        serde_json::json!({"server": k.run.url(), "kubeconfig": k.kubeconfig.display().to_string(),
                           "token": k.token, "nodes": k.nodes.clone()})
    });
    match args.output {
        crate::common::Output::Json => {
            let mut doc = serde_json::json!({"region": args.region});
            if let Some(r) = r {
                let imds: Vec<_> = r
                    .imds
                    .iter()
                    .map(|(id, a)| serde_json::json!({"instance_id": id, "endpoint": format!("http://{a}")}))
                    .collect();
                doc["ec2"] = serde_json::json!(format!("http://{}", r.ec2));
                doc["subnets"] = subnets(r)
                    .into_iter()
                    .map(|(id, cidr, zone, role)| serde_json::json!({"id": id, "cidr": cidr, "zone": zone, "role": role}))
                    .collect();
                doc["imds"] = serde_json::json!(imds);
            }
            if let Some(k) = k8s_json {
                doc["kubernetes"] = k;
            }
            println!("{doc}");
        }
        crate::common::Output::Table => {
            if let Some(r) = r {
                println!("EC2:  http://{}", r.ec2);
                for (id, a) in &r.imds {
                    println!("IMDS: http://{a}  ({id})");
                }
                for (id, cidr, zone, role) in subnets(r) {
                    println!("Subnet: {id} {cidr} {zone} ({role})");
                }
                println!(
                    "\nexport AWS_ENDPOINT_URL_EC2=http://{} AWS_REGION={} AWS_ACCESS_KEY_ID=emulator AWS_SECRET_ACCESS_KEY=emulator",
                    r.ec2, args.region
                );
                if let Some((_, a)) = r.imds.first() {
                    println!("export AWS_EC2_METADATA_SERVICE_ENDPOINT=http://{a}");
                }
            }
            if let Some(k) = k8s {
                println!(
                    "Kubernetes API: {}  (nodes: {})",
                    k.run.url(),
                    k.nodes.join(", ")
                );
                println!("export KUBECONFIG={}", k.kubeconfig.display());
                if let Some(n) = k.nodes.first() {
                    println!("export MY_NODE_NAME={n}");
                }
            }
        }
    }
}
