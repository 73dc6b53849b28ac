//! Custom networking (surface A.4, spec c.5): the ENIConfig the Node selects, re-read at every ENI
//! allocation and checked against EC2 (the subnet exists, in the node's zone and VPC; the groups
//! exist) before an ENI is made from it. A problem allocates nothing and is reported precisely:
//! a log line, the gauge `vpc_cni_eniconfig_invalid`, and a Warning Event on the Node naming the
//! ENIConfig and the field. Pods already running keep their addresses; existing ENIs are kept
//! when the ENIConfig changes, and the ENIs of this run remember which ENIConfig made them.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;
use vpc_cni_cloud::{Cloud, CloudError, EniPlacement, ErrorKind};
use vpc_cni_k8s::{EniConfig, KubeError};

use crate::state::Shared;

/// How long a failed check is trusted before EC2 is asked again (the ENIConfig's own changes
/// are seen at once: they change the key).
const RECHECK: Duration = Duration::from_secs(60);

/// Why no ENI can be made from the node's ENIConfig.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The ENIConfig's name (as the Node selects it).
    pub eniconfig: String,
    /// The field at fault (`metadata.name` when the object is missing).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ENIConfig/{}: {}: {}",
            self.eniconfig, self.field, self.message
        )
    }
}

/// An ENIConfig checked against EC2: what was checked, the outcome, when.
type Checked = (EniConfig, Result<(), Problem>, Instant);

/// The custom-networking state of the daemon.
#[derive(Default)]
pub struct CustomSide {
    /// ENI → the ENIConfig it was created from (ENIs created by this run).
    pub origins: Mutex<BTreeMap<String, String>>,
    /// The node's (VPC, zone), once read.
    home: Mutex<Option<(String, String)>>,
    /// The last ENIConfig checked against EC2, its outcome and when.
    last: Mutex<Option<Checked>>,
    /// The current problem, for introspection (None: fine or not in use).
    pub problem: Mutex<Option<Problem>>,
}

fn problem(name: &str, field: &str, message: impl Into<String>) -> Problem {
    Problem {
        eniconfig: name.to_string(),
        field: field.to_string(),
        message: message.into(),
    }
}

/// Where the next ENI goes: None without custom networking; `Err` when nothing may be allocated
/// now (the problem is already reported, or the caches are not synced yet).
pub async fn placement<C: Cloud>(s: &Shared<C>) -> Result<Option<(String, EniPlacement)>, ()> {
    if !s.cfg.settings.custom_networking {
        return Ok(None);
    }
    let Some(k) = s.kube.client().cloned() else {
        report(
            s,
            problem(
                "-",
                "-",
                "no Kubernetes client: custom networking reads the ENIConfig from the API server",
            ),
        );
        return Err(());
    };
    if !k.synced() || !k.eniconfigs_synced() {
        tracing::info!("custom networking: waiting for the Node and ENIConfig caches");
        return Err(());
    }
    let name = crate::kube::eniconfig_name(k.as_ref());
    let cfg = match k.eniconfig(&name) {
        _ if name.is_empty() => Err(problem(
            &name,
            "metadata.name",
            "the Node's label or annotation selecting the ENIConfig is empty",
        )),
        None => Err(problem(
            &name,
            "metadata.name",
            format!(
                "no ENIConfig named {name:?} (selected by Node {})",
                k.node().map(|n| n.name).unwrap_or_default()
            ),
        )),
        Some(Err(KubeError::Invalid { field, message, .. })) => {
            Err(problem(&name, &field, message))
        }
        Some(Err(e)) => Err(problem(&name, "-", e.to_string())),
        Some(Ok(c)) => Ok(c),
    };
    let checked = match cfg {
        Ok(c) => check(s, &c).await.map(|()| c),
        Err(p) => Err(p),
    };
    match checked {
        Ok(c) => {
            clear(s);
            Ok(Some((
                c.name.clone(),
                EniPlacement {
                    subnet: c.subnet,
                    security_groups: c.security_groups,
                },
            )))
        }
        Err(p) => {
            report(s, p);
            Err(())
        }
    }
}

/// The ENIConfig against EC2, remembered: a passed check holds while the ENIConfig is unchanged,
/// a failed one for [`RECHECK`].
async fn check<C: Cloud>(s: &Shared<C>, c: &EniConfig) -> Result<(), Problem> {
    if let Some((seen, outcome, at)) = s.custom.last.lock().unwrap().as_ref()
        && seen == c
        && (outcome.is_ok() || at.elapsed() < RECHECK)
    {
        return outcome.clone();
    }
    let outcome = check_with_ec2(s, c).await;
    // A transient EC2 failure says nothing about the ENIConfig: not remembered.
    if !outcome.as_ref().is_err_and(|p| p.field == "EC2") {
        *s.custom.last.lock().unwrap() = Some((c.clone(), outcome.clone(), Instant::now()));
    }
    outcome
}

async fn check_with_ec2<C: Cloud>(s: &Shared<C>, c: &EniConfig) -> Result<(), Problem> {
    let transient = |e: CloudError| problem(&c.name, "EC2", e.to_string());
    let (vpc, zone) = home(s).await.map_err(transient)?;
    let subnet = match s.cloud.subnet(&c.subnet).await {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return Err(problem(
                &c.name,
                "spec.subnet",
                format!("subnet {} does not exist", c.subnet),
            ));
        }
        Err(e) => return Err(transient(e)),
    };
    if subnet.vpc_id != vpc {
        return Err(problem(
            &c.name,
            "spec.subnet",
            format!(
                "subnet {} is in {}, the node in {vpc}",
                c.subnet, subnet.vpc_id
            ),
        ));
    }
    if subnet.zone != zone {
        return Err(problem(
            &c.name,
            "spec.subnet",
            format!(
                "subnet {} is in zone {}, the node in {zone} (an ENI cannot be attached across zones; use one ENIConfig per zone with ENI_CONFIG_LABEL_DEF=topology.kubernetes.io/zone)",
                c.subnet, subnet.zone
            ),
        ));
    }
    match s.cloud.check_security_groups(&c.security_groups).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => {
            Err(problem(&c.name, "spec.securityGroups", e.message))
        }
        Err(e) => Err(transient(e)),
    }
}

/// The node's VPC (of its primary ENI's subnet) and zone, read once.
async fn home<C: Cloud>(s: &Shared<C>) -> Result<(String, String), CloudError> {
    if let Some(h) = s.custom.home.lock().unwrap().clone() {
        return Ok(h);
    }
    let primary = s
        .lock()
        .ds
        .enis()
        .iter()
        .find(|e| e.is_primary)
        .map(|e| e.subnet_id.clone())
        .unwrap_or_default();
    let facts = s.cloud.subnet(&primary).await?;
    let h = (facts.vpc_id, s.meta.availability_zone.clone());
    *s.custom.home.lock().unwrap() = Some(h.clone());
    Ok(h)
}

/// Remember which ENIConfig made `eni`.
pub fn created<C: Cloud>(s: &Shared<C>, eni: &str, eniconfig: &str) {
    tracing::info!(eni, eniconfig, "ENI created from the ENIConfig");
    s.custom
        .origins
        .lock()
        .unwrap()
        .insert(eni.to_string(), eniconfig.to_string());
}

fn clear<C: Cloud>(s: &Shared<C>) {
    if s.custom.problem.lock().unwrap().take().is_some() {
        tracing::info!("custom networking: the ENIConfig is usable again");
    }
    s.metrics.set("vpc_cni_eniconfig_invalid", &[], 0.0);
}

fn report<C: Cloud>(s: &Shared<C>, p: Problem) {
    if p.field == "EC2" {
        // The ENIConfig may be fine: EC2 did not answer the check (throttled, down).
        tracing::warn!(problem = %p, "custom networking: the ENIConfig could not be checked; no ENI this cycle");
        return;
    }
    s.metrics.set("vpc_cni_eniconfig_invalid", &[], 1.0);
    let again = s.custom.problem.lock().unwrap().replace(p.clone()) == Some(p.clone());
    if !again {
        tracing::warn!(problem = %p, "custom networking: no ENI is allocated");
    }
    if !again {
        s.metrics
            .inc("awscni_ipamd_error_count", &[("fn", "getENIConfig")]);
    }
    crate::kube::node_warning(
        s,
        &format!("eniconfig/{}/{}", p.eniconfig, p.field),
        Duration::from_secs(300),
        "ENIConfigInvalid",
        "AllocateENI",
        format!(
            "{p}: no ENI is allocated until it is fixed; pods already running keep their addresses"
        ),
    );
}
