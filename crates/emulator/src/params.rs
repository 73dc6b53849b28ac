//! EC2 Query API parameters (`Action=…&NetworkInterfaceId.1=…&Filter.1.Name=…`): the flat
//! form fields and the numbered lists and structures built from them.

use std::collections::BTreeMap;

/// The parameters of one request.
#[derive(Debug, Clone, Default)]
pub struct Params(pub BTreeMap<String, String>);

impl Params {
    /// From decoded form pairs.
    pub fn new(pairs: impl IntoIterator<Item = (String, String)>) -> Self {
        Params(pairs.into_iter().collect())
    }

    /// One value.
    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str)
    }

    /// Every parameter name.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(|k| k.as_str())
    }

    /// A required value, or `MissingParameter`-style text naming it.
    pub fn required(&self, k: &str) -> Result<&str, String> {
        self.get(k)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| format!("The request must contain the parameter {k}"))
    }

    /// A number (absent: `None`; malformed: error naming it).
    pub fn number(&self, k: &str) -> Result<Option<u32>, String> {
        self.get(k)
            .map(|v| {
                v.parse()
                    .map_err(|_| format!("Invalid value '{v}' for {k}"))
            })
            .transpose()
    }

    /// `Prefix.1`, `Prefix.2`, … in index order.
    pub fn list(&self, prefix: &str) -> Vec<String> {
        let mut items: Vec<(u32, String)> = self
            .0
            .iter()
            .filter_map(|(k, v)| {
                let rest = k.strip_prefix(prefix)?.strip_prefix('.')?;
                rest.parse::<u32>().ok().map(|i| (i, v.clone()))
            })
            .collect();
        items.sort();
        items.into_iter().map(|(_, v)| v).collect()
    }

    /// The sub-fields of each `Prefix.N.*` structure, in index order.
    pub fn structs(&self, prefix: &str) -> Vec<Params> {
        let mut by: BTreeMap<u32, Params> = BTreeMap::new();
        for (k, v) in &self.0 {
            let Some(rest) = k.strip_prefix(prefix).and_then(|r| r.strip_prefix('.')) else {
                continue;
            };
            let Some((n, field)) = rest.split_once('.') else {
                continue;
            };
            if let Ok(i) = n.parse::<u32>() {
                by.entry(i)
                    .or_default()
                    .0
                    .insert(field.to_string(), v.clone());
            }
        }
        by.into_values().collect()
    }

    /// `Filter.N.Name` / `Filter.N.Value.M`.
    pub fn filters(&self) -> Vec<(String, Vec<String>)> {
        self.structs("Filter")
            .into_iter()
            .filter_map(|f| Some((f.get("Name")?.to_string(), f.list("Value"))))
            .collect()
    }

    /// Tags of `TagSpecification.N.Tag.M.{Key,Value}` (any resource type).
    pub fn tag_specifications(&self) -> BTreeMap<String, String> {
        self.structs("TagSpecification")
            .iter()
            .flat_map(|s| s.structs("Tag"))
            .filter_map(|t| {
                Some((
                    t.get("Key")?.to_string(),
                    t.get("Value").unwrap_or("").to_string(),
                ))
            })
            .collect()
    }

    /// Tags of `Tag.N.{Key,Value}`.
    pub fn tags(&self) -> BTreeMap<String, String> {
        self.structs("Tag")
            .iter()
            .filter_map(|t| {
                Some((
                    t.get("Key")?.to_string(),
                    t.get("Value").unwrap_or("").to_string(),
                ))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Params {
        Params::new(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn lists_structs_filters_tags() {
        let q = p(&[
            ("NetworkInterfaceId.2", "eni-b"),
            ("NetworkInterfaceId.1", "eni-a"),
            ("NetworkInterfaceId.10", "eni-j"),
            ("Filter.1.Name", "tag-key"),
            ("Filter.1.Value.1", "node.k8s.amazonaws.com/instance_id"),
            ("Filter.2.Name", "status"),
            ("Filter.2.Value.1", "available"),
            ("TagSpecification.1.ResourceType", "network-interface"),
            ("TagSpecification.1.Tag.1.Key", "k"),
            ("TagSpecification.1.Tag.1.Value", "v"),
            ("Tag.1.Key", "createdAt"),
            ("Tag.1.Value", "2026"),
            ("SecondaryPrivateIpAddressCount", "x"),
        ]);
        assert_eq!(q.list("NetworkInterfaceId"), ["eni-a", "eni-b", "eni-j"]);
        assert_eq!(
            q.filters()[1],
            ("status".to_string(), vec!["available".to_string()])
        );
        assert_eq!(
            q.tag_specifications().get("k").map(String::as_str),
            Some("v")
        );
        assert_eq!(q.tags().len(), 1);
        assert!(
            q.number("SecondaryPrivateIpAddressCount")
                .unwrap_err()
                .contains("SecondaryPrivateIpAddressCount")
        );
        assert!(q.required("SubnetId").unwrap_err().contains("SubnetId"));
    }
}
