//! `vpc-cni inspect`: read a running daemon's introspection endpoint and show its ENIs,
//! addresses, assignments and warm-pool state.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{Context, bail};
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use serde_json::Value;
use vpc_cni_ipamd::config::BindAddr;

use crate::common::Output;

/// Shows what a running ipamd holds: per ENI its device, CIDRs, addresses and assignments, and
/// the pool totals, from the daemon's introspection endpoint (/v1/enis).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Introspection address of the daemon: HOST:PORT, localhost:PORT or unix:/path (as
    /// INTROSPECTION_BIND_ADDRESS).
    #[arg(long, default_value = "127.0.0.1:61679", value_parser = bind_addr)]
    addr: BindAddr,
    /// Also list every recorded address (assigned or cooling).
    #[arg(long)]
    addresses: bool,
    /// Output format (json: the endpoint's document as is).
    #[arg(long, value_enum, default_value_t)]
    output: Output,
}

fn bind_addr(v: &str) -> Result<BindAddr, String> {
    vpc_cni_ipamd::config::parse_bind("--addr", v).map_err(|e| e.to_string())
}

/// A connected stream to the daemon's introspection listener.
trait Conn: Read + Write {
    fn set_read_timeout(&self, d: Option<Duration>) -> std::io::Result<()>;
}

impl Conn for TcpStream {
    fn set_read_timeout(&self, d: Option<Duration>) -> std::io::Result<()> {
        TcpStream::set_read_timeout(self, d)
    }
}

impl Conn for std::os::unix::net::UnixStream {
    fn set_read_timeout(&self, d: Option<Duration>) -> std::io::Result<()> {
        std::os::unix::net::UnixStream::set_read_timeout(self, d)
    }
}

/// GET `path` from `addr` over HTTP/1.0.
pub fn http_get(addr: &BindAddr, path: &str) -> anyhow::Result<String> {
    let connected: std::io::Result<Box<dyn Conn>> = match addr {
        BindAddr::Tcp(a) => TcpStream::connect_timeout(a, Duration::from_secs(3))
            .map(|s| Box::new(s) as Box<dyn Conn>),
        BindAddr::Unix(p) => {
            std::os::unix::net::UnixStream::connect(p).map(|s| Box::new(s) as Box<dyn Conn>)
        }
    };
    let mut s = connected.with_context(|| {
        format!(
            "cannot reach the daemon's introspection endpoint at {addr} (looked for {addr}/v1/enis). \
             Is `vpc-cni daemon` running, and with this INTROSPECTION_BIND_ADDRESS (see --addr)? \
             A daemon inside a network namespace listens there: run inspect in it too \
             (`ip netns exec <node> vpc-cni inspect`)"
        )
    })?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .context("malformed HTTP response")?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        bail!("{addr}{path}: {}", head.lines().next().unwrap_or(""));
    }
    Ok(body.to_string())
}

/// Run the command.
pub fn run(args: Args) -> anyhow::Result<()> {
    let body = http_get(&args.addr, "/v1/enis")?;
    let doc: Value = serde_json::from_str(&body).context("introspection answer is not JSON")?;
    if args.output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    let Some(cards) = doc.as_object() else {
        bail!("unexpected /v1/enis shape")
    };
    for (card, c) in cards {
        let total = c["TotalIPs"].as_u64().unwrap_or(0);
        let assigned = c["AssignedIPs"].as_u64().unwrap_or(0);
        println!(
            "Network card {card}: {total} addresses, {assigned} assigned, {} available",
            total.saturating_sub(assigned)
        );
        let mut t = Table::new();
        t.load_style(UTF8_FULL_CONDENSED).set_header(vec![
            "ENI",
            "Device",
            "Primary",
            "Route table",
            "Subnet",
            "ENIConfig",
            "CIDRs",
            "Addresses",
            "Assigned",
            "Cooling/recorded",
        ]);
        let mut addrs = Table::new();
        addrs.load_style(UTF8_FULL_CONDENSED).set_header(vec![
            "Address",
            "ENI",
            "Pod",
            "Assigned at",
            "Released at",
        ]);
        let mut enis: Vec<(&String, &Value)> = c["ENIs"]
            .as_object()
            .map(|m| m.iter().collect())
            .unwrap_or_default();
        enis.sort_by_key(|(_, e)| e["DeviceNumber"].as_u64());
        for (id, e) in enis {
            let cidrs = e["AvailableIPv4Cidrs"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            let (mut size, mut used, mut recorded) = (0u64, 0u64, 0u64);
            for (net, ci) in &cidrs {
                let len: u32 = net
                    .rsplit('/')
                    .next()
                    .and_then(|l| l.parse().ok())
                    .unwrap_or(32);
                size += 1u64 << (32 - len);
                for (ip, a) in ci["IPAddresses"].as_object().cloned().unwrap_or_default() {
                    recorded += 1;
                    let is_assigned = a["IPAMKey"]["networkName"]
                        .as_str()
                        .is_some_and(|n| !n.is_empty());
                    used += u64::from(is_assigned);
                    if args.addresses {
                        let pod = format!(
                            "{}/{}",
                            a["IPAMMetadata"]["k8sPodNamespace"].as_str().unwrap_or("-"),
                            a["IPAMMetadata"]["k8sPodName"].as_str().unwrap_or("-")
                        );
                        let released = a["UnassignedTime"]
                            .as_str()
                            .filter(|t| !t.starts_with("0001"))
                            .unwrap_or("");
                        addrs.add_row(vec![
                            ip,
                            id.clone(),
                            if is_assigned { pod } else { "(cooling)".into() },
                            a["AssignedTime"].as_str().unwrap_or("").into(),
                            released.into(),
                        ]);
                    }
                }
            }
            t.add_row(vec![
                id.clone(),
                e["DeviceNumber"].to_string(),
                if e["IsPrimary"].as_bool() == Some(true) {
                    "yes".into()
                } else {
                    String::new()
                },
                e["RouteTableID"].to_string(),
                e["SubnetID"].as_str().unwrap_or("").into(),
                e["ENIConfig"].as_str().unwrap_or("").into(),
                cidrs.len().to_string(),
                size.to_string(),
                used.to_string(),
                (recorded - used).to_string(),
            ]);
        }
        println!("{t}");
        if args.addresses {
            println!("{addrs}");
        }
    }
    // Older daemons (and upstream's) have no /v1/kubernetes: leave the line out.
    if let Ok(k) = http_get(&args.addr, "/v1/kubernetes")
        && let Ok(k) = serde_json::from_str::<Value>(&k)
    {
        println!("{}", kubernetes_line(&k));
        if let Some(list) = k["settings"].as_array() {
            let parts: Vec<String> = list
                .iter()
                .filter(|x| x["value"] != "")
                .map(|x| {
                    format!(
                        "{}={} ({})",
                        x["variable"].as_str().unwrap_or("?"),
                        x["value"].as_str().unwrap_or("?"),
                        x["source"].as_str().unwrap_or("?")
                    )
                })
                .collect();
            println!("Warm pool: {}", parts.join(", "));
        }
        if let Some(p) = k["eniConfigProblem"].as_str() {
            println!("Custom networking: no ENI is allocated: {p}");
        }
    }
    Ok(())
}

/// One line: where max pods comes from, cordon state, the ENIConfig.
fn kubernetes_line(k: &Value) -> String {
    let mut s = format!(
        "Kubernetes: {}; max pods {} (from {})",
        if k["connected"] == true {
            format!("Node {}", k["node"].as_str().unwrap_or("(not seen yet)"))
        } else {
            "not connected".into()
        },
        k["maxPods"],
        k["maxPodsSource"].as_str().unwrap_or("?")
    );
    if k["connected"] == true {
        let cordoned = k["cordoned"] == true;
        s += if cordoned {
            "; cordoned (no ENI allocated)"
        } else {
            "; schedulable"
        };
        if k["customNetworking"] == true {
            s += &format!("; ENIConfig {}", k["eniConfig"].as_str().unwrap_or("-"));
        }
    }
    if let Some(e) = k["capacityError"].as_str() {
        s += &format!("; {e}");
    }
    s
}
