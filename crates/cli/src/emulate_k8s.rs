//! The Kubernetes side of `vpc-cni emulate`: the API emulator started on loopback, its kubeconfig
//! written (mode 0600), and what kubelet and the DaemonSet controller would have created for each
//! simulated instance: its Node and an aws-node Pod in kube-system.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use serde_json::json;
use vpc_cni_kubemu::Running;
use vpc_cni_limits::{Formula, LimitsTable, raw_max_pods};

/// The running Kubernetes side.
pub struct K8s {
    /// The emulator.
    pub run: Running,
    /// The kubeconfig written.
    pub kubeconfig: PathBuf,
    /// The bearer token.
    pub token: String,
    /// Nodes registered.
    pub nodes: Vec<String>,
}

fn random_token() -> anyhow::Result<String> {
    use std::io::Read;
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .context("reading /dev/urandom for a token")?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// Start the API emulator and write its kubeconfig.
pub async fn start(
    addr: &SocketAddr,
    kubeconfig: Option<PathBuf>,
    token: Option<String>,
    tls_dir: Option<&std::path::Path>,
) -> anyhow::Result<K8s> {
    let token = match token {
        Some(t) if !t.is_empty() && t.chars().all(|c| c.is_ascii_graphic()) => t,
        Some(t) => anyhow::bail!("--k8s-token {t:?}: expected printable characters without spaces"),
        None => random_token()?,
    };
    if let Some(d) = tls_dir {
        std::fs::create_dir_all(d).with_context(|| format!("--k8s-tls-dir {}", d.display()))?;
    }
    let run = vpc_cni_kubemu::start_with(*addr, &token, tls_dir)
        .await
        .with_context(|| format!("--k8s-addr {addr}: cannot listen"))?;
    let path =
        kubeconfig.unwrap_or_else(|| std::env::temp_dir().join("vpc-cni-emulator.kubeconfig"));
    let text = run.kubeconfig(&token);
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .with_context(|| format!("--kubeconfig {}: cannot write", path.display()))?;
    Ok(K8s {
        run,
        kubeconfig: path,
        token,
        nodes: Vec::new(),
    })
}

/// EKS names a node after its private DNS name.
pub fn node_name(ip: std::net::Ipv4Addr, region: &str) -> String {
    let dashed = ip.to_string().replace('.', "-");
    if region == "us-east-1" {
        format!("ip-{dashed}.ec2.internal")
    } else {
        format!("ip-{dashed}.{region}.compute.internal")
    }
}

/// One Node (and aws-node Pod) per simulated instance.
pub fn register_nodes(
    k: &mut K8s,
    ec2: &vpc_cni_emulator::Running,
    table: &LimitsTable,
    region: &str,
) -> anyhow::Result<()> {
    let instances: Vec<_> = {
        let vpc = ec2.shared.vpc.lock().expect("emulator state");
        ec2.imds
            .iter()
            .filter_map(|(id, _)| vpc.imds_instance(id))
            .collect()
    };
    let mut store = k.run.shared.store.lock().expect("store");
    let nodes = store.find("", "v1", "nodes").expect("built in");
    let pods = store.find("", "v1", "pods").expect("built in");
    for (n, i) in instances.iter().enumerate() {
        let t = table.get(&i.instance_type)?;
        let max = raw_max_pods(
            t.limits.eni_limit,
            t.limits.ipv4_limit,
            Formula::SecondaryIp,
        );
        let name = node_name(i.local_ipv4, region);
        let node = json!({
            "metadata": {"name": name, "labels": {
                "kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                "node.kubernetes.io/instance-type": i.instance_type,
                "topology.kubernetes.io/zone": i.availability_zone,
                "topology.kubernetes.io/region": region}},
            "spec": {"providerID": format!("aws:///{}/{}", i.availability_zone, i.instance_id)},
            "status": {"capacity": {"pods": max.to_string()}, "allocatable": {"pods": max.to_string()},
                       "addresses": [{"type": "InternalIP", "address": i.local_ipv4.to_string()}]}
        });
        store
            .create(&nodes, "", node)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let pod = json!({
            "metadata": {"name": format!("aws-node-{n}"), "namespace": "kube-system",
                         "labels": {"k8s-app": "aws-node"}},
            "spec": {"nodeName": name, "hostNetwork": true,
                     "containers": [{"name": "aws-node", "image": "vpc-cni-rs"}]}
        });
        store
            .create(&pods, "kube-system", pod)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        k.nodes.push(name);
    }
    Ok(())
}
