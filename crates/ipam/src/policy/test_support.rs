//! Test support shared by the policies' unit tests: a datastore laid out by ENI.

use std::net::Ipv4Addr;
use std::time::Duration;

use ipnet::Ipv4Net;

use crate::datastore::{Datastore, EniSpec};
use crate::key::{IpamKey, PodMetadata};
use crate::time::Time;

/// The key of test pod `p`.
pub(crate) fn key(p: u32) -> IpamKey {
    IpamKey::new("aws-cni", &p.to_string(), "eth0")
}

/// ENIs `eni-0` (primary), `eni-1`, … holding `cidrs[i]` /32s (or /28s with `pd`), and pods
/// `0..pods` assigned at time zero, lowest addresses first.
pub(crate) fn datastore(pd: bool, cooldown: Duration, cidrs: &[u32], pods: u32) -> Datastore {
    let mut ds = Datastore::new(pd, cooldown);
    let mut next = u32::from(Ipv4Addr::new(10, 0, 0, 0));
    for (d, n) in cidrs.iter().enumerate() {
        let id = format!("eni-{d}");
        let spec = EniSpec {
            id: id.clone(),
            device_number: d as u32,
            is_primary: d == 0,
            ..Default::default()
        };
        ds.add_eni(spec, Time::ZERO).unwrap();
        for _ in 0..*n {
            let net = Ipv4Net::new(Ipv4Addr::from(next), if pd { 28 } else { 32 }).unwrap();
            ds.add_cidr(&id, net, pd).unwrap();
            next += 16;
        }
    }
    for p in 0..pods {
        ds.assign(&key(p), PodMetadata::default(), Time::ZERO)
            .unwrap();
    }
    ds
}
