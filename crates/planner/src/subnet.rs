//! Does a node group fit in a subnet? Addresses held versus addresses usable, and for prefix
//! mode the aligned /28 blocks an unfragmented subnet offers.

use ipnet::Ipv4Net;
use serde::Serialize;

use crate::plan::PlanRow;

/// Addresses AWS reserves in every subnet: the first four and the last.
pub const AWS_RESERVED: u32 = 5;

/// The question: `nodes` nodes like the planned one in `cidr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubnetQuestion {
    /// Nodes in the group.
    pub nodes: u32,
    /// The subnet.
    pub cidr: Ipv4Net,
    /// Custom networking: the ENIConfig's subnet, where every ENI but the primary goes (the node
    /// subnet then holds one address per node).
    pub pod_cidr: Option<Ipv4Net>,
}

/// The answer, for the row that holds the most addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SubnetFit {
    /// The subnet.
    pub cidr: String,
    /// Nodes in the group.
    pub nodes: u32,
    /// Pods per node at the row used.
    pub pods_per_node: u32,
    /// Addresses usable in the subnet (size minus the 5 AWS reserves).
    pub usable_addresses: u32,
    /// Addresses the group holds (ENI primaries plus pod addresses).
    pub addresses_held: u64,
    /// Usable addresses left (negative: short by that many).
    pub free_addresses: i64,
    /// Aligned /28 blocks the group needs (prefix mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix_blocks_needed: Option<u64>,
    /// Aligned /28 blocks an unfragmented subnet can offer after the ENI primaries are placed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix_blocks_available: Option<u64>,
    /// Whether it fits.
    pub fits: bool,
    /// One line saying so.
    pub verdict: String,
}

/// Answer `q` for `row` (the worst row of the plan): the node subnet, and the pod subnet when
/// `q` has one.
pub fn fit(
    q: &SubnetQuestion,
    row: Option<&PlanRow>,
    prefix_mode: bool,
) -> (SubnetFit, Option<SubnetFit>) {
    let (pods, addresses, enis, prefixes) = row
        .map(|r| (r.pods, r.subnet_addresses, r.enis, r.prefixes))
        .unwrap_or((0, 0, 0, 0));
    let Some(pod_cidr) = q.pod_cidr else {
        let usage = Usage {
            addresses,
            primaries: enis,
            prefixes: prefix_mode.then_some(prefixes),
        };
        return (fit_usage(q.nodes, q.cidr, pods, &usage), None);
    };
    // The primary ENI stays in the node subnet; every other ENI (its primary address, its
    // secondary IPs or prefixes) is in the pod subnet.
    let node = Usage {
        addresses: 1,
        primaries: 1,
        prefixes: None,
    };
    let others = enis.saturating_sub(1);
    let pod = Usage {
        addresses: addresses.saturating_sub(1),
        primaries: others,
        prefixes: prefix_mode.then_some(prefixes),
    };
    (
        fit_usage(q.nodes, q.cidr, pods, &node),
        Some(fit_usage(q.nodes, pod_cidr, pods, &pod)),
    )
}

/// What one node takes from a subnet.
struct Usage {
    /// Addresses (ENI primaries and pod addresses).
    addresses: u32,
    /// ENI primary addresses (single addresses that fragment the /28 blocks).
    primaries: u32,
    /// Prefixes (prefix mode).
    prefixes: Option<u32>,
}

fn fit_usage(nodes: u32, cidr: Ipv4Net, pods: u32, u: &Usage) -> SubnetFit {
    let size: u64 = 1u64 << (32 - cidr.prefix_len());
    let usable = size.saturating_sub(u64::from(AWS_RESERVED));
    let per_node = u.addresses;
    let n = u64::from(nodes);
    let held = n * u64::from(per_node);
    let free = usable as i64 - held as i64;
    let (needed, available) = match u.prefixes {
        Some(p) => (
            Some(n * u64::from(p)),
            Some(clean_blocks(size, n * u64::from(u.primaries))),
        ),
        None => (None, None),
    };
    let fits = free >= 0 && needed.zip(available).is_none_or(|(nd, av)| nd <= av);
    let verdict = match (fits, needed, available) {
        (true, _, _) => format!(
            "fits: {nodes} nodes × {per_node} addresses = {held} of {usable} usable, {free} left"
        ),
        (false, Some(nd), Some(av)) if nd > av && free >= 0 => format!(
            "does not fit: {nd} aligned /28 blocks needed but an unfragmented {cidr} offers only {av}"
        ),
        _ => format!(
            "does not fit: {nodes} nodes × {per_node} addresses = {held} > {usable} usable ({} short)",
            -free
        ),
    };
    SubnetFit {
        cidr: cidr.to_string(),
        nodes,
        pods_per_node: pods,
        usable_addresses: usable as u32,
        addresses_held: held,
        free_addresses: free,
        prefix_blocks_needed: needed,
        prefix_blocks_available: available,
        fits,
        verdict,
    }
}

/// /28 blocks free of AWS-reserved addresses, less those that `primaries` single addresses must
/// take once the slack of the two reserved-touching blocks is used (best case: no fragmentation).
fn clean_blocks(size: u64, primaries: u64) -> u64 {
    if size < 16 {
        return 0;
    }
    let blocks = size / 16;
    let (clean, slack) = if blocks == 1 {
        (0, 11)
    } else {
        (blocks - 2, 12 + 15)
    };
    let overflow = primaries.saturating_sub(slack);
    clean.saturating_sub(overflow.div_ceil(16))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_block_counts() {
        for (size, primaries, want) in [
            (256, 0, 14),
            (256, 27, 14),
            (256, 28, 13),
            (16, 0, 0),
            (8, 0, 0),
            (4096, 0, 254),
        ] {
            assert_eq!(
                clean_blocks(size, primaries),
                want,
                "size {size} primaries {primaries}"
            );
        }
    }
}
