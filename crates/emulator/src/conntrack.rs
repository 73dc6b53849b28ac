//! Connection tracking timeouts on the wire: `ConnectionTrackingSpecification.*` in requests
//! (CreateNetworkInterface, ModifyNetworkInterfaceAttribute) and
//! `connectionTrackingConfiguration` in ENI descriptions.

use vpc_cni_sim::ConnTrack;

use crate::ec2::{ApiError, param};
use crate::params::Params;
use crate::xml::{el, wrap};

/// The timeouts a request sets, if any.
pub(crate) fn from_params(p: &Params) -> Result<Option<ConnTrack>, ApiError> {
    let n = |k: &str| {
        p.number(&format!("ConnectionTrackingSpecification.{k}"))
            .map_err(param)
    };
    let ct = ConnTrack {
        tcp_established: n("TcpEstablishedTimeout")?,
        udp_stream: n("UdpStreamTimeout")?,
        udp: n("UdpTimeout")?,
    };
    Ok((ct != ConnTrack::default()).then_some(ct))
}

/// `connectionTrackingConfiguration` of an ENI (empty when unset).
pub(crate) fn xml(ct: Option<&ConnTrack>) -> String {
    let Some(ct) = ct else {
        return String::new();
    };
    let opt = |name: &str, v: Option<u32>| v.map(|v| el(name, v)).unwrap_or_default();
    wrap(
        "connectionTrackingConfiguration",
        opt("tcpEstablishedTimeout", ct.tcp_established)
            + &opt("udpStreamTimeout", ct.udp_stream)
            + &opt("udpTimeout", ct.udp),
    )
}
