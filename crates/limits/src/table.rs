//! The instance-type table: typed limits per EC2 instance type, loaded from a data directory
//! (the `instance-limits.json` + `instance-vcpus.json` schema) or from the built-in set.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::builtin;
use crate::error::LimitsError;

/// File name of the per-type network limits inside a data directory.
pub const LIMITS_FILE: &str = "instance-limits.json";
/// File name of the per-type default vCPU counts inside a data directory.
pub const VCPUS_FILE: &str = "instance-vcpus.json";
/// Environment variable naming the data directory when `--data-dir` is not given.
pub const DATA_DIR_ENV: &str = "VPC_CNI_DATA_DIR";

/// Directories searched, in order, when neither `--data-dir` nor `VPC_CNI_DATA_DIR` is set.
pub const DEFAULT_SEARCH_PATH: &[&str] = &[
    "/etc/vpc-cni/data",
    "/usr/local/share/vpc-cni/data",
    "/usr/share/vpc-cni/data",
];

/// How EC2 virtualises an instance type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Hypervisor {
    /// AWS Nitro: supports prefix delegation.
    Nitro,
    /// Xen (older generations): no prefix delegation.
    Xen,
    /// EC2 reports no hypervisor (bare metal, mostly).
    Unknown,
}

/// One network card of an instance type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkCard {
    /// Card index as EC2 numbers it.
    pub index: u32,
    /// ENIs that can be attached to this card.
    pub max_enis: u32,
}

/// Network limits of one instance type, in the schema of `instance-limits.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceLimits {
    /// Maximum ENIs on the default network card (what max pods uses).
    pub eni_limit: u32,
    /// IPv4 addresses per ENI, primary included.
    pub ipv4_limit: u32,
    /// Index of the default network card (0 for every type today).
    pub default_network_card_index: u32,
    /// All network cards of the type.
    pub network_cards: Vec<NetworkCard>,
    /// The hypervisor EC2 reports.
    pub hypervisor: Hypervisor,
    /// Whether the type is bare metal.
    pub bare_metal: bool,
}

impl InstanceLimits {
    /// Whether the VPC CNI can use prefix delegation here (Nitro or bare metal).
    pub fn supports_prefix_delegation(&self) -> bool {
        self.hypervisor == Hypervisor::Nitro || self.bare_metal
    }
}

/// One instance type with its limits and (when known) default vCPU count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceType {
    /// The API name, e.g. `m5.large`.
    pub name: String,
    /// Network limits.
    pub limits: InstanceLimits,
    /// `VCpuInfo.DefaultVCpus`, when known.
    pub vcpus: Option<u32>,
}

/// Where a table came from, for messages and `--output json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableSource {
    /// The small set compiled into the binary.
    BuiltIn,
    /// A data directory (with the built-in set filling types it lacks).
    DataDir(PathBuf),
}

impl std::fmt::Display for TableSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TableSource::BuiltIn => write!(f, "built-in table"),
            TableSource::DataDir(p) => write!(f, "{}", p.display()),
        }
    }
}

/// The instance-type table.
#[derive(Debug, Clone)]
pub struct LimitsTable {
    types: BTreeMap<String, InstanceType>,
    source: TableSource,
}

impl LimitsTable {
    /// Add (or replace) one type, e.g. learned from EC2 `DescribeInstanceTypes` at start.
    pub fn insert(&mut self, t: InstanceType) {
        self.types.insert(t.name.trim().to_ascii_lowercase(), t);
    }

    /// The built-in set only.
    pub fn builtin() -> Self {
        let types = builtin::entries()
            .map(|t| (t.name.clone(), t))
            .collect::<BTreeMap<_, _>>();
        LimitsTable {
            types,
            source: TableSource::BuiltIn,
        }
    }

    /// Load a data directory holding `instance-limits.json` and (optionally) `instance-vcpus.json`.
    /// Built-in types missing from the files are kept, so the table is never smaller than the
    /// built-in set.
    pub fn load_dir(dir: &Path) -> Result<Self, LimitsError> {
        let limits_path = dir.join(LIMITS_FILE);
        let raw = read(&limits_path)?;
        let limits: BTreeMap<String, InstanceLimits> =
            serde_json::from_str(&raw).map_err(|source| LimitsError::Parse {
                path: limits_path.clone(),
                source,
            })?;
        let vcpus_path = dir.join(VCPUS_FILE);
        let vcpus: BTreeMap<String, u32> = if vcpus_path.exists() {
            let raw = read(&vcpus_path)?;
            serde_json::from_str(&raw).map_err(|source| LimitsError::Parse {
                path: vcpus_path.clone(),
                source,
            })?
        } else {
            BTreeMap::new()
        };
        let mut table = Self::builtin();
        for (name, limits) in limits {
            if limits.ipv4_limit == 0 {
                return Err(LimitsError::Invalid {
                    path: limits_path,
                    instance_type: name,
                    reason: "ipv4_limit must be at least 1".into(),
                });
            }
            let vcpus = vcpus.get(&name).copied();
            table.types.insert(
                name.clone(),
                InstanceType {
                    name,
                    limits,
                    vcpus,
                },
            );
        }
        table.source = TableSource::DataDir(dir.to_path_buf());
        Ok(table)
    }

    /// Resolve the table the way every command does: `--data-dir`, else `VPC_CNI_DATA_DIR`, else
    /// the first directory of [`DEFAULT_SEARCH_PATH`] holding `instance-limits.json`, else the
    /// built-in set. An explicitly named directory that cannot be loaded is an error.
    pub fn resolve(data_dir: Option<&Path>, env_value: Option<&str>) -> Result<Self, LimitsError> {
        if let Some(dir) = data_dir {
            return Self::load_dir(dir);
        }
        if let Some(dir) = env_value.filter(|v| !v.is_empty()) {
            return Self::load_dir(Path::new(dir));
        }
        for dir in DEFAULT_SEARCH_PATH {
            let dir = Path::new(dir);
            if dir.join(LIMITS_FILE).is_file() {
                return Self::load_dir(dir);
            }
        }
        Ok(Self::builtin())
    }

    /// Where this table came from.
    pub fn source(&self) -> &TableSource {
        &self.source
    }

    /// Number of instance types.
    pub fn len(&self) -> usize {
        self.types.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.types.is_empty()
    }

    /// All types, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = &InstanceType> {
        self.types.values()
    }

    /// Look a type up; an unknown name is an error carrying near matches.
    pub fn get(&self, name: &str) -> Result<&InstanceType, LimitsError> {
        let key = name.trim().to_ascii_lowercase();
        self.types
            .get(&key)
            .ok_or_else(|| LimitsError::UnknownType {
                name: name.to_string(),
                suggestions: crate::suggest::near_matches(&key, self.types.keys(), 5),
                source_desc: self.source.to_string(),
            })
    }
}

fn read(path: &Path) -> Result<String, LimitsError> {
    std::fs::read_to_string(path).map_err(|source| LimitsError::Read {
        path: path.to_path_buf(),
        source,
    })
}
