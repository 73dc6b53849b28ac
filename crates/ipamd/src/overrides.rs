//! Per-node warm-pool settings (beyond upstream; asked for in upstream #216 and
//! containers-roadmap #1834): the Node annotations `vpc-cni.io/warm-ip-target`,
//! `vpc-cni.io/minimum-ip-target`, `vpc-cni.io/warm-eni-target`, `vpc-cni.io/warm-prefix-target`
//! and `vpc-cni.io/max-eni` override the DaemonSet's variables for this node. They are read at
//! every pool cycle from the Node watch's cache and applied on change, without a restart;
//! validated as the variables are. A bad value keeps that setting as it was and is reported with
//! a Warning Event naming the annotation and the value. The parsing is pure ([`resolve`]).

use std::collections::BTreeMap;

use serde::Serialize;
use vpc_cni_ipam::settings::{
    EnvReader, MAX_ENI, MINIMUM_IP_TARGET, Settings, SettingsError, WARM_ENI_TARGET,
    WARM_IP_TARGET, WARM_PREFIX_TARGET,
};

/// (annotation, the variable it overrides).
pub const ANNOTATIONS: &[(&str, &str)] = &[
    ("vpc-cni.io/warm-ip-target", WARM_IP_TARGET),
    ("vpc-cni.io/minimum-ip-target", MINIMUM_IP_TARGET),
    ("vpc-cni.io/warm-eni-target", WARM_ENI_TARGET),
    ("vpc-cni.io/warm-prefix-target", WARM_PREFIX_TARGET),
    ("vpc-cni.io/max-eni", MAX_ENI),
];

/// A setting in force and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Source {
    /// The variable.
    pub variable: &'static str,
    /// Its value in force.
    pub value: String,
    /// `env` or `annotation <name>`.
    pub source: String,
}

/// A refused annotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The annotation.
    pub annotation: String,
    /// Its value.
    pub value: String,
    /// Why.
    pub reason: String,
}

/// The outcome of reading the annotations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The settings to use.
    pub settings: Settings,
    /// The annotations applied (annotation → value).
    pub applied: BTreeMap<String, String>,
    /// The annotations refused.
    pub refused: Vec<Refused>,
}

fn set(s: &mut Settings, var: &str, v: Option<u32>) {
    match var {
        WARM_IP_TARGET => s.warm_ip_target = v.unwrap_or(0),
        MINIMUM_IP_TARGET => s.minimum_ip_target = v.unwrap_or(0),
        WARM_ENI_TARGET => s.warm_eni_target = v.unwrap_or(0),
        WARM_PREFIX_TARGET => s.warm_prefix_target = v.unwrap_or(0),
        MAX_ENI => s.max_eni = v,
        _ => {}
    }
}

fn parse(var: &str, value: &str) -> Result<Option<u32>, SettingsError> {
    let r = EnvReader::new(|k| (k == var).then(|| value.to_string()));
    if var == MAX_ENI {
        r.uint_min(var, 1)
    } else {
        r.uint(var, 0).map(Some)
    }
}

/// The settings for this node: `env` (the DaemonSet's) with the node's annotations on top.
/// `previous` are the annotations applied last time: a bad value keeps the previous one (or the
/// variable's). A combination the variables would refuse keeps `previous` altogether.
pub fn resolve(
    env: &Settings,
    annotations: &BTreeMap<String, String>,
    previous: &BTreeMap<String, String>,
) -> Resolved {
    let mut applied = BTreeMap::new();
    let mut refused = Vec::new();
    let mut s = env.clone();
    for (ann, var) in ANNOTATIONS {
        let Some(value) = annotations.get(*ann) else {
            continue;
        };
        let parsed = parse(var, value).and_then(|v| {
            let mut one = s.clone();
            set(&mut one, var, v);
            one.validate().map(|()| v)
        });
        match parsed {
            Ok(v) => {
                set(&mut s, var, v);
                applied.insert(ann.to_string(), value.clone());
            }
            Err(e) => {
                refused.push(Refused {
                    annotation: ann.to_string(),
                    value: value.clone(),
                    reason: reason(&e),
                });
                if let Some(old) = previous.get(*ann)
                    && let Ok(v) = parse(var, old)
                {
                    set(&mut s, var, v);
                    applied.insert(ann.to_string(), old.clone());
                }
            }
        }
    }
    if let Err(e) = s.validate() {
        // Each value alone was fine, together they are not: keep what was in force.
        refused.push(Refused {
            annotation: applied.keys().cloned().collect::<Vec<_>>().join(", "),
            value: String::new(),
            reason: reason(&e),
        });
        return resolve(env, previous, &BTreeMap::new());
    }
    Resolved {
        settings: s,
        applied,
        refused,
    }
}

fn reason(e: &SettingsError) -> String {
    match e {
        SettingsError::Invalid { expected, .. } => format!("expected {expected}"),
        SettingsError::Conflict(m) => m.clone(),
    }
}

/// Where each overridable setting comes from.
pub fn sources(s: &Settings, applied: &BTreeMap<String, String>) -> Vec<Source> {
    ANNOTATIONS
        .iter()
        .map(|(ann, var)| {
            let value = match *var {
                WARM_IP_TARGET => s.warm_ip_target.to_string(),
                MINIMUM_IP_TARGET => s.minimum_ip_target.to_string(),
                WARM_ENI_TARGET => s.warm_eni_target.to_string(),
                WARM_PREFIX_TARGET => s.warm_prefix_target.to_string(),
                _ => s.max_eni.map(|n| n.to_string()).unwrap_or_default(),
            };
            Source {
                variable: var,
                value,
                source: if applied.contains_key(*ann) {
                    format!("annotation {ann}")
                } else {
                    "env".into()
                },
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// (annotations, previous, warm IP target, max ENI, refused annotations).
    type Case = (
        Vec<(&'static str, &'static str)>,
        Vec<(&'static str, &'static str)>,
        u32,
        Option<u32>,
        Vec<&'static str>,
    );

    #[test]
    fn annotations_override_validate_and_fall_back() {
        let env = Settings::default();
        let none = BTreeMap::new();
        // (annotations, previous, warm_ip, max_eni, refused annotations)
        let cases: Vec<Case> = vec![
            (vec![], vec![], 0, None, vec![]),
            (
                vec![("vpc-cni.io/warm-ip-target", "3")],
                vec![],
                3,
                None,
                vec![],
            ),
            (
                vec![("vpc-cni.io/max-eni", "2")],
                vec![],
                0,
                Some(2),
                vec![],
            ),
            (
                vec![("vpc-cni.io/max-eni", "0")],
                vec![],
                0,
                None,
                vec!["vpc-cni.io/max-eni"],
            ),
            (
                vec![("vpc-cni.io/warm-ip-target", "lots")],
                vec![],
                0,
                None,
                vec!["vpc-cni.io/warm-ip-target"],
            ),
            // A bad value keeps the previous annotation's value.
            (
                vec![("vpc-cni.io/warm-ip-target", "-1")],
                vec![("vpc-cni.io/warm-ip-target", "5")],
                5,
                None,
                vec!["vpc-cni.io/warm-ip-target"],
            ),
            (
                vec![("vpc-cni.io/warm-ip-target", "2000000")],
                vec![],
                0,
                None,
                vec!["vpc-cni.io/warm-ip-target"],
            ),
            (vec![("other.io/x", "1")], vec![], 0, None, vec![]),
        ];
        for (ann, prev, warm, max_eni, bad) in cases {
            let r = resolve(&env, &map(&ann), &map(&prev));
            assert_eq!(r.settings.warm_ip_target, warm, "{ann:?}");
            assert_eq!(r.settings.max_eni, max_eni, "{ann:?}");
            let refused: Vec<_> = r.refused.iter().map(|x| x.annotation.as_str()).collect();
            assert_eq!(refused, bad, "{ann:?}");
            for x in &r.refused {
                assert!(x.reason.starts_with("expected"), "{x:?}");
            }
        }
        let r = resolve(&env, &none, &none);
        assert_eq!(r.settings, env);
    }

    #[test]
    fn a_combination_the_env_would_refuse_keeps_the_previous_settings() {
        // Prefix delegation needs one of the targets above 0.
        let env = Settings {
            prefix_delegation: true,
            warm_prefix_target: 1,
            ..Settings::default()
        };
        let ann = map(&[("vpc-cni.io/warm-prefix-target", "0")]);
        let prev = map(&[("vpc-cni.io/warm-prefix-target", "2")]);
        let r = resolve(&env, &ann, &prev);
        assert_eq!(r.settings.warm_prefix_target, 2);
        assert_eq!(r.refused.len(), 1);
        assert!(
            r.refused[0].reason.contains("ENABLE_PREFIX_DELEGATION"),
            "{:?}",
            r.refused
        );
        let src = sources(&r.settings, &r.applied);
        let wpt = src
            .iter()
            .find(|s| s.variable == WARM_PREFIX_TARGET)
            .unwrap();
        assert_eq!(
            (wpt.value.as_str(), wpt.source.as_str()),
            ("2", "annotation vpc-cni.io/warm-prefix-target")
        );
    }
}
