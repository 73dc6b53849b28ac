//! One cloud call as the daemon makes it (timed into `awscni_aws_api_latency_ms`), and the
//! datastore record of an attached interface: shared by the pool loop and reconciliation.

use vpc_cni_cloud::{Cloud, CloudError, Interface};
use vpc_cni_ipam::{EniSpec, Time};

use crate::state::{Node, Shared};

/// Run one cloud call and record its latency in `awscni_aws_api_latency_ms` (`status` is "200",
/// or the AWS error code: the Cloud trait does not carry HTTP statuses).
pub async fn timed<C: Cloud, T>(
    s: &Shared<C>,
    api: &'static str,
    call: impl std::future::Future<Output = Result<T, CloudError>>,
) -> Result<T, CloudError> {
    let started = std::time::Instant::now();
    let r = call.await;
    let status = r.as_ref().err().map_or("200", |e| e.code.as_str());
    s.metrics.observe(
        "awscni_aws_api_latency_ms",
        &[
            ("api", api),
            ("error", if r.is_err() { "true" } else { "false" }),
            ("status", status),
        ],
        started.elapsed().as_secs_f64() * 1e3,
    );
    r
}

/// The datastore record of an attached interface (device 0 is the primary, in the main table;
/// device N uses route table N + 1).
pub fn eni_spec(i: &Interface) -> EniSpec {
    EniSpec {
        id: i.id.clone(),
        device_number: i.device_number,
        is_primary: i.device_number == 0,
        subnet_id: i.subnet_id.clone(),
        route_table_id: if i.device_number == 0 {
            254
        } else {
            i.device_number + 1
        },
        primary_ip: Some(i.primary_ip),
        ..EniSpec::default()
    }
}

/// Record an attached interface in the datastore; a trunk ENI (security groups for pods) is
/// marked so no address goes on it, and its slot noted in the limits.
pub fn add_eni<C: Cloud>(s: &Shared<C>, node: &mut Node, i: &Interface, t: Time) {
    let trunk = s
        .trunks
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .contains(&i.id);
    let mut spec = eni_spec(i);
    spec.is_trunk = trunk;
    let _ = node.ds.add_eni(spec, t);
    if trunk {
        let mut limits = *node.policy.limits();
        limits.trunk_attached = true;
        node.policy.set_limits(limits);
    }
}
