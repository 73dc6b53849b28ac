//! Upstream's growth failure paths through the daemon's executor (spec c.5): a failed assign is
//! retried asking for one; then an insufficient-address error with subnet discovery leads to a
//! new ENI in the same cycle, without discovery to the 120 s pause, and any other error to
//! nothing at all (no ENI).

use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use ipnet::{Ipv4Net, Ipv6Net};
use vpc_cni_cloud::{
    Cloud, CloudError, EniPlacement, InstanceMeta, Interface, SimCloud, SubnetFacts,
};
use vpc_cni_ipamd::host::NoHost;
use vpc_cni_ipamd::{DaemonConfig, init_with_host, pool};
use vpc_cni_limits::LimitsTable;

/// The simulated cloud with every `AssignPrivateIpAddresses` failing with `code`, and a record of
/// the calls made.
#[derive(Clone)]
struct FailingAssign {
    inner: SimCloud,
    code: &'static str,
    calls: Arc<Mutex<Vec<String>>>,
}

impl FailingAssign {
    fn log(&self, c: String) {
        self.calls.lock().unwrap().push(c);
    }
}

impl Cloud for FailingAssign {
    async fn instance(&self) -> Result<InstanceMeta, CloudError> {
        self.inner.instance().await
    }
    async fn interfaces(&self) -> Result<Vec<Interface>, CloudError> {
        self.inner.interfaces().await
    }
    async fn eni_addresses(&self, eni: &str) -> Result<(Vec<Ipv4Addr>, Vec<Ipv4Net>), CloudError> {
        self.inner.eni_addresses(eni).await
    }
    async fn assign(
        &self,
        _eni: &str,
        ips: u32,
        _prefixes: u32,
    ) -> Result<(Vec<Ipv4Addr>, Vec<Ipv4Net>), CloudError> {
        self.log(format!("assign {ips}"));
        Err(CloudError {
            code: self.code.into(),
            message: "injected".into(),
        })
    }
    async fn unassign(&self, eni: &str, cidrs: &[Ipv4Net]) -> Result<(), CloudError> {
        self.inner.unassign(eni, cidrs).await
    }
    async fn assign_ipv6_prefixes(&self, eni: &str, n: u32) -> Result<Vec<Ipv6Net>, CloudError> {
        self.inner.assign_ipv6_prefixes(eni, n).await
    }
    async fn unassign_ipv6_prefixes(&self, eni: &str, p: &[Ipv6Net]) -> Result<(), CloudError> {
        self.inner.unassign_ipv6_prefixes(eni, p).await
    }
    async fn allocate_eni(
        &self,
        ips: u32,
        prefixes: u32,
        placement: Option<&EniPlacement>,
    ) -> Result<Interface, CloudError> {
        self.log(format!("allocate {ips}"));
        self.inner.allocate_eni(ips, prefixes, placement).await
    }
    async fn subnet(&self, id: &str) -> Result<SubnetFacts, CloudError> {
        self.inner.subnet(id).await
    }
    async fn check_security_groups(&self, ids: &[String]) -> Result<(), CloudError> {
        self.inner.check_security_groups(ids).await
    }
    async fn free_eni(&self, eni: &str) -> Result<(), CloudError> {
        self.inner.free_eni(eni).await
    }
}

/// One pool cycle of an m5.large with WARM_IP_TARGET=5 whose assigns fail with `code`; then a
/// second cycle. Returns the cloud calls of each.
async fn two_cycles(code: &'static str, discovery: bool) -> (Vec<String>, Vec<String>) {
    let dir = std::env::temp_dir().join(format!(
        "ipamd-assignfail-{code}-{discovery}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let env = [
        ("WARM_IP_TARGET", "5"),
        (
            "ENABLE_SUBNET_DISCOVERY",
            if discovery { "true" } else { "false" },
        ),
        ("DISABLE_METRICS", "true"),
        ("DISABLE_INTROSPECTION", "true"),
    ];
    let mut cfg = DaemonConfig::from_lookup(|k| {
        env.iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.to_string())
    })
    .unwrap();
    cfg.checkpoint = dir.join("ipam.json");
    let table = LimitsTable::builtin();
    let inner = SimCloud::launch(
        table.get("m5.large").unwrap(),
        "10.0.0.0/24".parse().unwrap(),
        1,
        0.0,
    )
    .unwrap();
    let cloud = FailingAssign {
        inner,
        code,
        calls: Arc::default(),
    };
    let calls = cloud.calls.clone();
    let s = init_with_host(cfg, cloud, &table, Box::new(NoHost))
        .await
        .unwrap();
    pool::cycle(&s).await;
    let first = std::mem::take(&mut *calls.lock().unwrap());
    pool::cycle(&s).await;
    let second = std::mem::take(&mut *calls.lock().unwrap());
    let _ = std::fs::remove_dir_all(&dir);
    (first, second)
}

#[tokio::test]
async fn assign_failures_follow_upstream() {
    // (error, subnet discovery, calls in the first cycle, calls in the next)
    let cases: [(&str, bool, &[&str], &[&str]); 4] = [
        // Insufficient + discovery: ask for one, then a new ENI (another subnet) at once.
        (
            "InsufficientFreeAddressesInSubnet",
            true,
            &["assign 5", "assign 1", "allocate 5"],
            &[],
        ),
        // Without discovery: the 120 s pause; the next cycle makes no call.
        (
            "InsufficientCidrBlocks",
            false,
            &["assign 5", "assign 1"],
            &[],
        ),
        // Any other error: upstream returns it; no ENI, and the next cycle tries again.
        (
            "InternalError",
            true,
            &["assign 5", "assign 1"],
            &["assign 5", "assign 1"],
        ),
        (
            "UnauthorizedOperation",
            false,
            &["assign 5", "assign 1"],
            &["assign 5", "assign 1"],
        ),
    ];
    for (code, discovery, first, second) in cases {
        let (a, b) = two_cycles(code, discovery).await;
        assert_eq!(a, first, "{code} discovery={discovery}: first cycle");
        assert_eq!(b, second, "{code} discovery={discovery}: second cycle");
    }
}
