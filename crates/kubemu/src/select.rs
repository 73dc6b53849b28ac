//! Label selectors (`a=b`, `a==b`, `a!=b`, `a`, `!a`, `a in (x,y)`, `a notin (x)`) and field
//! selectors (`path=value`, `path!=value` on dotted paths such as `spec.nodeName`), as list and
//! watch requests carry them. A selector the emulator cannot read is an error, not "match all".

use serde_json::Value;

/// One requirement.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Req {
    Eq(String, String),
    Ne(String, String),
    Exists(String),
    Absent(String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
}

/// A parsed label or field selector (all requirements must hold).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    reqs: Vec<Req>,
    fields: bool,
}

/// Split on commas outside parentheses.
fn terms(s: &str) -> Vec<&str> {
    let (mut out, mut depth, mut start) = (Vec::new(), 0i32, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out.into_iter()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect()
}

fn set_values(rest: &str, term: &str) -> Result<Vec<String>, String> {
    let inner = rest
        .trim()
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| format!("selector term {term:?}: expected a (v1,v2) set"))?;
    Ok(inner.split(',').map(|v| v.trim().to_string()).collect())
}

impl Selector {
    /// Parse a label selector.
    pub fn labels(s: &str) -> Result<Selector, String> {
        Self::parse(s, false)
    }

    /// Parse a field selector.
    pub fn fields(s: &str) -> Result<Selector, String> {
        Self::parse(s, true)
    }

    fn parse(s: &str, fields: bool) -> Result<Selector, String> {
        let mut reqs = Vec::new();
        for t in terms(s) {
            let req = if let Some((k, v)) = t.split_once("!=") {
                Req::Ne(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = t.split_once("==").or_else(|| t.split_once('=')) {
                Req::Eq(k.trim().into(), v.trim().into())
            } else if fields {
                return Err(format!(
                    "field selector term {t:?}: expected path=value or path!=value"
                ));
            } else if let Some(k) = t.strip_prefix('!') {
                Req::Absent(k.trim().into())
            } else if let Some((k, rest)) = t.split_once(" notin ") {
                Req::NotIn(k.trim().into(), set_values(rest, t)?)
            } else if let Some((k, rest)) = t.split_once(" in ") {
                Req::In(k.trim().into(), set_values(rest, t)?)
            } else if t
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
            {
                Req::Exists(t.into())
            } else {
                return Err(format!("label selector term {t:?} is not understood"));
            };
            let key = match &req {
                Req::Eq(k, _) | Req::Ne(k, _) | Req::Exists(k) | Req::Absent(k) => k,
                Req::In(k, _) | Req::NotIn(k, _) => k,
            };
            let key_ok = !key.is_empty()
                && key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c));
            if !key_ok {
                return Err(format!("selector term {t:?}: {key:?} is not a valid key"));
            }
            reqs.push(req);
        }
        Ok(Selector { reqs, fields })
    }

    /// Whether `obj` matches.
    pub fn matches(&self, obj: &Value) -> bool {
        self.reqs.iter().all(|r| {
            let get = |k: &str| -> Option<String> {
                if self.fields {
                    let mut v = obj;
                    for part in k.split('.') {
                        v = v.get(part)?;
                    }
                    Some(match v {
                        Value::String(s) => s.clone(),
                        Value::Bool(b) => b.to_string(),
                        Value::Number(n) => n.to_string(),
                        _ => return None,
                    })
                } else {
                    obj["metadata"]["labels"][k].as_str().map(String::from)
                }
            };
            match r {
                // An absent field compares as the empty string, as the API server does.
                Req::Eq(k, v) => get(k).unwrap_or_default() == *v,
                Req::Ne(k, v) => get(k).unwrap_or_default() != *v,
                Req::Exists(k) => get(k).is_some(),
                Req::Absent(k) => get(k).is_none(),
                Req::In(k, vs) => get(k).is_some_and(|x| vs.contains(&x)),
                Req::NotIn(k, vs) => get(k).is_none_or(|x| !vs.contains(&x)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_selectors_as_kubectl_writes_them() {
        let obj = json!({"metadata": {"labels": {"app": "web", "tier": "front"}}});
        for (sel, want) in [
            ("", true),
            ("app=web", true),
            ("app==web", true),
            ("app!=web", false),
            ("app", true),
            ("!app", false),
            ("!missing", true),
            ("tier in (front, back)", true),
            ("tier notin (front)", false),
            ("app=web,tier=back", false),
            ("missing!=x", true),
        ] {
            assert_eq!(Selector::labels(sel).unwrap().matches(&obj), want, "{sel}");
        }
        assert!(Selector::labels("a in x").is_err());
        assert!(Selector::labels("a >= 3").is_err());
    }

    #[test]
    fn field_selectors_follow_dotted_paths() {
        let pod = json!({"metadata": {"name": "p", "namespace": "d"}, "spec": {"nodeName": "n1"}});
        for (sel, want) in [
            ("spec.nodeName=n1", true),
            ("spec.nodeName=n2", false),
            ("metadata.name=p,metadata.namespace=d", true),
            ("spec.nodeName!=n1", false),
            ("spec.missing=", true),
        ] {
            assert_eq!(Selector::fields(sel).unwrap().matches(&pod), want, "{sel}");
        }
        assert!(Selector::fields("spec.nodeName").is_err());
    }
}
