//! Account-wide EC2 request throttling: one token bucket per action class, with the sizes and
//! refill rates AWS publishes ("Request throttling for the Amazon EC2 API").

use std::collections::BTreeMap;

use serde::Serialize;
use vpc_cni_ipam::Time;

use crate::error::{Ec2Error, Ec2ErrorCode};

/// The EC2 actions the daemon uses, as throttling classes.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, serde::Deserialize,
)]
pub enum Ec2Action {
    /// `AssignPrivateIpAddresses` (IPs and prefixes).
    AssignPrivateIpAddresses,
    /// `UnassignPrivateIpAddresses`.
    UnassignPrivateIpAddresses,
    /// `CreateNetworkInterface`.
    CreateNetworkInterface,
    /// `DeleteNetworkInterface`.
    DeleteNetworkInterface,
    /// `ModifyNetworkInterfaceAttribute`.
    ModifyNetworkInterfaceAttribute,
    /// `AttachNetworkInterface`.
    AttachNetworkInterface,
    /// `DetachNetworkInterface`.
    DetachNetworkInterface,
    /// `CreateTags`.
    CreateTags,
    /// `AssignIpv6Addresses` (addresses and /80 prefixes).
    AssignIpv6Addresses,
    /// `UnassignIpv6Addresses`.
    UnassignIpv6Addresses,
    /// `DescribeNetworkInterfaces` / `DescribeInstances` without filters or pagination.
    DescribeUnfiltered,
    /// Filtered or paginated `Describe*`.
    DescribeFiltered,
}

impl Ec2Action {
    /// Every class.
    pub const ALL: [Ec2Action; 12] = [
        Self::AssignPrivateIpAddresses,
        Self::UnassignPrivateIpAddresses,
        Self::CreateNetworkInterface,
        Self::DeleteNetworkInterface,
        Self::ModifyNetworkInterfaceAttribute,
        Self::AttachNetworkInterface,
        Self::DetachNetworkInterface,
        Self::CreateTags,
        Self::AssignIpv6Addresses,
        Self::UnassignIpv6Addresses,
        Self::DescribeUnfiltered,
        Self::DescribeFiltered,
    ];

    /// AWS's published (bucket size, refill per second).
    pub fn bucket(self) -> (u32, u32) {
        match self {
            Self::AttachNetworkInterface | Self::DetachNetworkInterface => (50, 5),
            Self::CreateTags => (100, 10),
            Self::DescribeUnfiltered => (50, 10),
            Self::DescribeFiltered => (100, 20),
            _ => (100, 5),
        }
    }

    /// The action's API name.
    pub fn name(self) -> &'static str {
        match self {
            Self::AssignPrivateIpAddresses => "AssignPrivateIpAddresses",
            Self::UnassignPrivateIpAddresses => "UnassignPrivateIpAddresses",
            Self::CreateNetworkInterface => "CreateNetworkInterface",
            Self::DeleteNetworkInterface => "DeleteNetworkInterface",
            Self::ModifyNetworkInterfaceAttribute => "ModifyNetworkInterfaceAttribute",
            Self::AttachNetworkInterface => "AttachNetworkInterface",
            Self::DetachNetworkInterface => "DetachNetworkInterface",
            Self::CreateTags => "CreateTags",
            Self::AssignIpv6Addresses => "AssignIpv6Addresses",
            Self::UnassignIpv6Addresses => "UnassignIpv6Addresses",
            Self::DescribeUnfiltered => "DescribeNetworkInterfaces",
            Self::DescribeFiltered => "DescribeNetworkInterfaces(filtered)",
        }
    }
}

/// One token bucket; tokens are kept in thousandths for exact integer refill.
#[derive(Debug, Clone, Copy, Serialize, serde::Deserialize)]
struct Bucket {
    size_milli: u64,
    refill_per_s: u64,
    milli: u64,
    at: Time,
}

impl Bucket {
    fn take(&mut self, now: Time) -> bool {
        let elapsed_ms = now.since(self.at).as_millis() as u64;
        self.milli = (self.milli + elapsed_ms * self.refill_per_s).min(self.size_milli);
        self.at = now.max(self.at);
        if self.milli >= 1000 {
            self.milli -= 1000;
            true
        } else {
            false
        }
    }
}

/// The account's buckets. `scale` multiplies sizes and rates (1.0 = AWS defaults; a raised
/// limit is e.g. 3.0); `enabled = false` turns throttling off.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Throttle {
    buckets: BTreeMap<Ec2Action, Bucket>,
    enabled: bool,
}

impl Throttle {
    /// Full buckets at `now`.
    pub fn new(enabled: bool, scale: f64, now: Time) -> Self {
        let buckets = Ec2Action::ALL
            .iter()
            .map(|&a| {
                let (size, rate) = a.bucket();
                let size_milli = (f64::from(size) * scale * 1000.0) as u64;
                let b = Bucket {
                    size_milli,
                    refill_per_s: (f64::from(rate) * scale) as u64,
                    milli: size_milli,
                    at: now,
                };
                (a, b)
            })
            .collect();
        Throttle { buckets, enabled }
    }

    /// Spend a token of `action`'s bucket, or answer `RequestLimitExceeded`.
    pub fn check(&mut self, action: Ec2Action, now: Time) -> Result<(), Ec2Error> {
        if !self.enabled {
            return Ok(());
        }
        // A state saved before an action had a bucket: that action is not throttled.
        let Some(b) = self.buckets.get_mut(&action) else {
            return Ok(());
        };
        if b.take(now) {
            Ok(())
        } else {
            Err(Ec2Error::new(
                Ec2ErrorCode::RequestLimitExceeded,
                "Request limit exceeded.",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_drains_then_refills_at_the_published_rate() {
        let mut t = Throttle::new(true, 1.0, Time::ZERO);
        let a = Ec2Action::CreateNetworkInterface;
        for _ in 0..100 {
            t.check(a, Time::ZERO).unwrap();
        }
        assert_eq!(
            t.check(a, Time::ZERO).unwrap_err().code,
            Ec2ErrorCode::RequestLimitExceeded
        );
        // 5 per second: 1 s later exactly 5 more calls succeed.
        let ok = (0..10)
            .filter(|_| t.check(a, Time::from_secs(1)).is_ok())
            .count();
        assert_eq!(ok, 5);
        // Other buckets are independent.
        t.check(Ec2Action::CreateTags, Time::from_secs(1)).unwrap();
        // 1,000 nodes each needing one call: the last succeeds only after (1000 − 100) / 5 s.
        let mut t = Throttle::new(true, 1.0, Time::ZERO);
        let mut now = Time::ZERO;
        let mut done = 0;
        while done < 1000 {
            if t.check(Ec2Action::AssignPrivateIpAddresses, now).is_ok() {
                done += 1;
            } else {
                now = now.plus(std::time::Duration::from_millis(100));
            }
        }
        assert_eq!(now.as_millis(), 180_000);
        assert!(
            Throttle::new(false, 1.0, Time::ZERO)
                .check(a, Time::ZERO)
                .is_ok()
        );
    }
}
