//! `DescribeSecurityGroups`: the groups of the simulated VPC (its defaults and those added with
//! `emulate --security-group`), by `GroupId.N` or the `group-id` filter; an unknown ID fails the
//! call with `InvalidGroup.NotFound`, which is how the daemon checks an ENIConfig's groups.

use crate::ec2::{ApiError, Ctx, OWNER, bad};
use crate::params::Params;
use crate::xml::{el, set};

/// Answer `DescribeSecurityGroups`.
pub(crate) fn describe(c: &mut Ctx<'_>, p: &Params) -> Result<String, ApiError> {
    let mut ids = p.list("GroupId");
    for (name, values) in p.filters() {
        match name.as_str() {
            "group-id" => ids.extend(values),
            "vpc-id" => {}
            other => {
                return Err(bad(
                    "InvalidParameterValue",
                    format!("The filter '{other}' is invalid"),
                ));
            }
        }
    }
    let groups = c.vpc.describe_security_groups(&ids, c.now)?;
    let vpc_id = c.vpc.vpc_id.clone();
    Ok(set(
        "securityGroupInfo",
        groups
            .iter()
            .map(|g| {
                el("ownerId", OWNER)
                    + &el("groupId", g)
                    + &el("groupName", g)
                    + &el("groupDescription", "emulated security group")
                    + &el("vpcId", &vpc_id)
                    + &set("ipPermissions", Vec::<String>::new())
                    + &set("ipPermissionsEgress", Vec::<String>::new())
            })
            .collect::<Vec<_>>(),
    ))
}
