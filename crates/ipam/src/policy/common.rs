//! Rules every policy shares: draining ENIs of excluded subnets and the ENI-slot arithmetic.

use super::{Action, Decision, PoolLimits};
use crate::datastore::Datastore;
use crate::settings::Settings;

/// Excluded ENIs (their subnet is tagged out of pod use): every CIDR without an assigned
/// address leaves the datastore and goes back to EC2, so pods drain off them.
pub(crate) fn drain_excluded(ds: &mut Datastore) -> Vec<Decision> {
    let ids: Vec<String> = ds
        .enis()
        .iter()
        .filter(|e| e.excluded)
        .map(|e| e.id.clone())
        .collect();
    let mut out = Vec::new();
    for id in ids {
        let removed: Vec<_> = ds
            .freeable_cidrs(&id)
            .into_iter()
            .filter(|net| ds.del_cidr(&id, *net, false).is_ok())
            .collect();
        if !removed.is_empty() {
            out.push(Decision {
                reason: format!(
                    "{id} is in an excluded subnet (kubernetes.io/role/cni=0): release its {} unused CIDR(s)",
                    removed.len()
                ),
                action: Action::Release {
                    eni: id,
                    cidrs: removed,
                },
            });
        }
    }
    out
}

/// `hasRoomForEni`: fewer ENIs than `MAX_ENI` minus unmanaged ones minus the trunk's slot.
pub(crate) fn has_room_for_eni(settings: &Settings, limits: &PoolLimits, ds: &Datastore) -> bool {
    let trunk_slot = u32::from(settings.enable_pod_eni && !limits.trunk_attached);
    let cap = limits
        .max_eni
        .saturating_sub(limits.unmanaged_enis)
        .saturating_sub(trunk_slot);
    (ds.enis().len() as u32) < cap
}
