//! The patch types the API server accepts that clients here send: JSON merge patch (RFC 7386),
//! strategic merge patch for maps (merge semantics; lists are replaced, `$patch: delete` and
//! `$retainKeys` honoured, other `$` directives dropped), and JSON patch (RFC 6902).

use serde_json::{Map, Value};

/// RFC 7386: objects merge key by key, `null` deletes, anything else replaces.
pub fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let t = target.as_object_mut().expect("object");
    for (k, v) in p {
        if v.is_null() {
            t.remove(k);
        } else {
            merge(t.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

/// Strategic merge patch as far as maps go.
pub fn strategic(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if p.get("$patch").and_then(Value::as_str) == Some("delete") {
        *target = Value::Null;
        return;
    }
    if p.get("$patch").and_then(Value::as_str) == Some("replace") {
        let mut clean = p.clone();
        clean.remove("$patch");
        *target = Value::Object(clean);
        return;
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let t = target.as_object_mut().expect("object");
    if let Some(Value::Array(keep)) = p.get("$retainKeys") {
        let keep: Vec<&str> = keep.iter().filter_map(Value::as_str).collect();
        t.retain(|k, _| keep.contains(&k.as_str()));
    }
    for (k, v) in p {
        if k.starts_with('$') {
            continue;
        }
        if v.is_null() {
            t.remove(k);
            continue;
        }
        let slot = t.entry(k.clone()).or_insert(Value::Null);
        strategic(slot, v);
        if slot.is_null() {
            t.remove(k);
        }
    }
}

/// RFC 6902 (add, remove, replace, test, move, copy).
pub fn json_patch(target: &mut Value, ops: &Value) -> Result<(), String> {
    let ops = ops
        .as_array()
        .ok_or("a JSON patch is an array of operations")?;
    for (i, op) in ops.iter().enumerate() {
        let kind = op["op"]
            .as_str()
            .ok_or(format!("operation {i}: op missing"))?;
        let path = op["path"]
            .as_str()
            .ok_or(format!("operation {i}: path missing"))?;
        match kind {
            "add" | "replace" => set(target, path, op["value"].clone(), kind == "add")?,
            "remove" => {
                take(target, path)?;
            }
            "test" => {
                if target.pointer(path) != Some(&op["value"]) {
                    return Err(format!("operation {i}: test of {path} failed"));
                }
            }
            "move" | "copy" => {
                let from = op["from"]
                    .as_str()
                    .ok_or(format!("operation {i}: from missing"))?;
                let v = if kind == "move" {
                    take(target, from)?
                } else {
                    target
                        .pointer(from)
                        .cloned()
                        .ok_or(format!("{from}: not found"))?
                };
                set(target, path, v, true)?;
            }
            other => return Err(format!("operation {i}: unknown op {other:?}")),
        }
    }
    Ok(())
}

fn split(path: &str) -> Result<(String, String), String> {
    let (parent, last) = path
        .rsplit_once('/')
        .ok_or(format!("{path}: not a JSON pointer"))?;
    Ok((parent.into(), last.replace("~1", "/").replace("~0", "~")))
}

fn set(target: &mut Value, path: &str, v: Value, insert: bool) -> Result<(), String> {
    let (parent, key) = split(path)?;
    match target.pointer_mut(&parent) {
        Some(Value::Object(m)) => {
            if !insert && !m.contains_key(&key) {
                return Err(format!("{path}: not found"));
            }
            m.insert(key, v);
        }
        Some(Value::Array(a)) if key == "-" && insert => a.push(v),
        Some(Value::Array(a)) => {
            let i: usize = key.parse().map_err(|_| format!("{path}: bad index"))?;
            match (insert, i <= a.len(), i < a.len()) {
                (true, true, _) => a.insert(i, v),
                (false, _, true) => a[i] = v,
                _ => return Err(format!("{path}: index out of range")),
            }
        }
        _ => return Err(format!("{parent}: not found")),
    }
    Ok(())
}

fn take(target: &mut Value, path: &str) -> Result<Value, String> {
    let (parent, key) = split(path)?;
    match target.pointer_mut(&parent) {
        Some(Value::Object(m)) => m.remove(&key).ok_or(format!("{path}: not found")),
        Some(Value::Array(a)) => {
            let i: usize = key.parse().map_err(|_| format!("{path}: bad index"))?;
            (i < a.len())
                .then(|| a.remove(i))
                .ok_or(format!("{path}: index out of range"))
        }
        _ => Err(format!("{parent}: not found")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_per_rfc_7386() {
        let mut t = json!({"a": "b", "c": {"d": "e", "f": "g"}, "l": [1, 2]});
        merge(&mut t, &json!({"a": "z", "c": {"f": null}, "l": [3]}));
        assert_eq!(t, json!({"a": "z", "c": {"d": "e"}, "l": [3]}));
    }

    #[test]
    fn strategic_patch_merges_maps_and_honours_directives() {
        let mut t = json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"x": 1, "y": 2}});
        strategic(
            &mut t,
            &json!({"metadata": {"labels": {"a": null, "c": "3"}}, "spec": {"$retainKeys": ["x"], "x": 5}}),
        );
        assert_eq!(
            t,
            json!({"metadata": {"labels": {"b": "2", "c": "3"}}, "spec": {"x": 5}})
        );
        strategic(&mut t, &json!({"spec": {"$patch": "delete"}}));
        assert_eq!(t, json!({"metadata": {"labels": {"b": "2", "c": "3"}}}));
    }

    #[test]
    fn json_patch_operations() {
        let mut t = json!({"a": {"b": [1, 2]}});
        json_patch(
            &mut t,
            &json!([
                {"op": "add", "path": "/a/b/-", "value": 3},
                {"op": "replace", "path": "/a/b/0", "value": 0},
                {"op": "test", "path": "/a/b/1", "value": 2},
                {"op": "add", "path": "/a/c~1d", "value": "x"},
                {"op": "remove", "path": "/a/b/1"}
            ]),
        )
        .unwrap();
        assert_eq!(t, json!({"a": {"b": [0, 3], "c/d": "x"}}));
        assert!(json_patch(&mut t, &json!([{"op": "remove", "path": "/nope"}])).is_err());
        assert!(
            json_patch(
                &mut t,
                &json!([{"op": "test", "path": "/a/b/0", "value": 9}])
            )
            .is_err()
        );
    }
}
