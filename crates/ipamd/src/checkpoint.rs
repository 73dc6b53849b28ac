//! The checkpoint file (`ipam.json`, upstream format): written atomically (temp file in the same
//! directory, fsync, rename) after every change, and read back at start. A checkpoint that cannot
//! be read is an error that stops the daemon: live assignments are never silently dropped.

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use vpc_cni_ipam::checkpoint::{CHECKPOINT_VERSION, CheckpointData, CheckpointEntry};
use vpc_cni_ipam::{Datastore, IpamKey, Time};

/// Checkpoint failures.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// Reading or writing failed.
    #[error("checkpoint {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The file is not a checkpoint.
    #[error(
        "checkpoint {path} is corrupt ({reason}); refusing to start so that no assignment is lost — inspect or move the file"
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// The checkpoint file.
#[derive(Debug, Clone)]
pub struct CheckpointFile {
    path: PathBuf,
}

/// What restoring did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Restored {
    /// Entries re-attached to an ENI.
    pub restored: usize,
    /// Entries whose address is on no attached ENI (upstream drops them as "stale/dead"; the
    /// daemon first asks the host whether a live pod still routes the address).
    pub dropped: Vec<Dropped>,
}

/// A checkpoint entry no attached ENI carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    /// Its key.
    pub key: IpamKey,
    /// Its address.
    pub ip: Ipv4Addr,
    /// Its pod.
    pub metadata: vpc_cni_ipam::PodMetadata,
    /// When it was assigned.
    pub at: Time,
}

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{} {}",
            self.key.container_id, self.key.if_name, self.ip
        )
    }
}

impl CheckpointFile {
    /// The file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        CheckpointFile { path: path.into() }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, source: std::io::Error) -> CheckpointError {
        CheckpointError::Io {
            path: self.path.clone(),
            source,
        }
    }

    fn dir(&self) -> &Path {
        self.path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
    }

    fn name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "ipam.json".into())
    }

    /// Remove the temporary files of writes a crash interrupted (`<name>.tmp<pid>`); returns
    /// how many went.
    pub fn clean_temp_files(&self) -> usize {
        let prefix = format!("{}.tmp", self.name());
        let Ok(entries) = std::fs::read_dir(self.dir()) else {
            return 0;
        };
        entries
            .flatten()
            .filter(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                n.strip_prefix(&prefix)
                    .is_some_and(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
            })
            .filter(|e| std::fs::remove_file(e.path()).is_ok())
            .count()
    }

    /// Copy the file as it is now to `<name>.bak` (before the daemon rewrites it at start, so
    /// entries restore dropped can be recovered by hand). `None` when there is no file.
    pub fn backup(&self) -> Result<Option<PathBuf>, CheckpointError> {
        if !self.path.exists() {
            return Ok(None);
        }
        let bak = self.dir().join(format!("{}.bak", self.name()));
        std::fs::copy(&self.path, &bak).map_err(|e| self.io(e))?;
        Ok(Some(bak))
    }

    /// Read it; a missing file is an empty checkpoint (fresh node). A symlink whose target is
    /// missing is an error, not a fresh node (the assignments are somewhere else).
    pub fn read(&self) -> Result<CheckpointData, CheckpointError> {
        if let Ok(m) = std::fs::symlink_metadata(&self.path)
            && m.file_type().is_symlink()
            && !self.path.exists()
        {
            let target = std::fs::read_link(&self.path).unwrap_or_default();
            return Err(CheckpointError::Corrupt {
                path: self.path.clone(),
                reason: format!("a symlink to {}, which does not exist", target.display()),
            });
        }
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(CheckpointData {
                    version: CHECKPOINT_VERSION.into(),
                    allocations: Vec::new(),
                });
            }
            Err(e) => return Err(self.io(e)),
        };
        let data: CheckpointData =
            serde_json::from_str(&text).map_err(|e| CheckpointError::Corrupt {
                path: self.path.clone(),
                reason: e.to_string(),
            })?;
        if data.version != CHECKPOINT_VERSION {
            return Err(CheckpointError::Corrupt {
                path: self.path.clone(),
                reason: format!(
                    "version {:?}, expected {CHECKPOINT_VERSION:?}",
                    data.version
                ),
            });
        }
        Ok(data)
    }

    /// Write the datastore's assignments atomically.
    pub fn write(&self, ds: &Datastore) -> Result<(), CheckpointError> {
        let data = CheckpointData::from_datastore(ds);
        let mut body = serde_json::to_vec(&data).expect("checkpoint serialises");
        body.push(b'\n');
        let dir = self.dir();
        std::fs::create_dir_all(dir).map_err(|e| self.io(e))?;
        let name = self.name();
        let tmp = dir.join(format!("{name}.tmp{}", std::process::id()));
        let mut f = std::fs::File::create(&tmp).map_err(|e| self.io(e))?;
        f.write_all(&body).map_err(|e| self.io(e))?;
        f.sync_all().map_err(|e| self.io(e))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| self.io(e))?;
        // Make the rename itself durable.
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

/// Re-create the checkpoint's assignments in `ds` (after its ENIs were loaded). Entries whose
/// address is on no attached ENI are dropped and reported; two entries on one address are an
/// error.
pub fn restore(
    ds: &mut Datastore,
    data: &CheckpointData,
    path: &Path,
) -> Result<Restored, CheckpointError> {
    let mut out = Restored::default();
    for e in &data.allocations {
        let CheckpointEntry {
            network_name,
            container_id,
            if_name,
            ipv4,
            allocation_timestamp,
            metadata,
            ..
        } = e;
        if ipv4.is_empty() {
            restore_v6(ds, e, path)?;
            out.restored += 1;
            continue;
        }
        let ip: Ipv4Addr = ipv4.parse().map_err(|_| CheckpointError::Corrupt {
            path: path.to_path_buf(),
            reason: format!("entry for container {container_id}: {ipv4:?} is not an IPv4 address"),
        })?;
        let key = IpamKey::new(network_name, container_id, if_name);
        let at = Time((*allocation_timestamp).max(0) as u64 / 1_000_000);
        match ds.restore(key.clone(), ip, metadata.clone(), at) {
            Ok(_) => out.restored += 1,
            Err(vpc_cni_ipam::DatastoreError::UnknownCidr(_)) => out.dropped.push(Dropped {
                key,
                ip,
                metadata: metadata.clone(),
                at,
            }),
            Err(err) => {
                return Err(CheckpointError::Corrupt {
                    path: path.to_path_buf(),
                    reason: format!("entry for container {container_id}: {err}"),
                });
            }
        }
    }
    Ok(out)
}

/// An IPv6 node's entry: into the /80 pool. Without IPv6 mode, dropping it would lose a live
/// pod's assignment, so the daemon stops, naming the variable.
fn restore_v6(ds: &mut Datastore, e: &CheckpointEntry, path: &Path) -> Result<(), CheckpointError> {
    let corrupt = |reason: String| CheckpointError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let id = &e.container_id;
    let Some(pool) = ds.v6_mut() else {
        return Err(corrupt(format!(
            "entry for container {id} has no IPv4 address (ipv6 {:?}): an IPv6 node's checkpoint; start with ENABLE_IPv6=true",
            e.ipv6
        )));
    };
    let ip: std::net::Ipv6Addr = e.ipv6.parse().map_err(|_| {
        corrupt(format!(
            "entry for container {id}: {:?} is not an IPv6 address",
            e.ipv6
        ))
    })?;
    let key = IpamKey::new(&e.network_name, id, &e.if_name);
    let at = Time(e.allocation_timestamp.max(0) as u64 / 1_000_000);
    pool.restore(key, ip, e.metadata.clone(), at)
        .map(|_| ())
        .map_err(|err| corrupt(format!("entry for container {id}: {err}")))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use vpc_cni_ipam::{Datastore, EniSpec, IpamKey, Time};

    use super::*;

    /// The checkpoint shape written by upstream ipamd (spec a.5), nanosecond timestamps included.
    const UPSTREAM: &str = r#"{"version":"vpc-cni-ipam/1","allocations":[{"networkName":"aws-cni","containerID":"5a1f9118a712","ifName":"eth0","ipv4":"192.168.9.106","allocationTimestamp":1724000000000000000,"metadata":{"k8sPodNamespace":"kube-system","k8sPodName":"coredns-57ff979f67-qqbdh","interfacesCount":1}},{"networkName":"aws-cni","containerID":"gone","ifName":"eth0","ipv4":"10.9.9.9","allocationTimestamp":1724000000000000000}]}"#;

    #[test]
    fn reads_an_upstream_checkpoint_and_writes_it_back_in_the_same_shape() {
        let dir = std::env::temp_dir().join(format!("ckpt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = CheckpointFile::new(dir.join("ipam.json"));
        std::fs::write(file.path(), UPSTREAM).unwrap();
        let data = file.read().unwrap();
        let mut ds = Datastore::new(false, Duration::from_secs(30));
        ds.add_eni(
            EniSpec {
                id: "eni-1".into(),
                is_primary: true,
                ..Default::default()
            },
            Time::ZERO,
        )
        .unwrap();
        ds.add_cidr("eni-1", "192.168.9.106/32".parse().unwrap(), false)
            .unwrap();
        let r = restore(&mut ds, &data, file.path()).unwrap();
        assert_eq!(r.restored, 1);
        let dropped: Vec<String> = r.dropped.iter().map(|d| d.to_string()).collect();
        assert_eq!(dropped, vec!["gone/eth0 10.9.9.9".to_string()]);
        let key = IpamKey::new("aws-cni", "5a1f9118a712", "eth0");
        assert_eq!(ds.lookup(&key), Some("192.168.9.106".parse().unwrap()));
        file.write(&ds).unwrap();
        let text = std::fs::read_to_string(file.path()).unwrap();
        assert!(text.ends_with("}\n"));
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        let e = &back["allocations"][0];
        assert_eq!(e["allocationTimestamp"], 1_724_000_000_000_000_000i64);
        assert_eq!(e["metadata"]["k8sPodName"], "coredns-57ff979f67-qqbdh");
        assert!(e.get("ipv6").is_none(), "empty fields are omitted");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn corrupt_or_foreign_checkpoints_are_errors_naming_the_file() {
        let dir = std::env::temp_dir().join(format!("ckpt-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = CheckpointFile::new(dir.join("ipam.json"));
        for body in [
            "{not json",
            r#"{"version":"vpc-cni-ipam/2","allocations":[]}"#,
        ] {
            std::fs::write(file.path(), body).unwrap();
            let err = file.read().unwrap_err().to_string();
            assert!(
                err.contains("ipam.json") && err.contains("refusing to start"),
                "{err}"
            );
        }
        std::fs::remove_file(file.path()).unwrap();
        assert!(
            file.read().unwrap().allocations.is_empty(),
            "a missing file is a fresh node"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_ipv6_nodes_checkpoint_is_refused_without_ipv6_mode_and_restored_with_it() {
        let dir = std::env::temp_dir().join(format!("ckpt-v6-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = CheckpointFile::new(dir.join("ipam.json"));
        std::fs::write(
            file.path(),
            r#"{"version":"vpc-cni-ipam/1","allocations":[{"networkName":"aws-cni","containerID":"c6","ifName":"eth0","ipv6":"2001:db8::5","allocationTimestamp":1}]}"#,
        )
        .unwrap();
        let data = file.read().unwrap();
        let mut ds = Datastore::new(false, Duration::from_secs(30));
        let err = restore(&mut ds, &data, file.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("ENABLE_IPv6") && err.contains("c6"), "{err}");
        // In IPv6 mode the same entry is restored into the /80 and written back as it was.
        let mut ds = Datastore::new(true, Duration::from_secs(30));
        ds.set_v6(vpc_cni_ipam::V6Pool::new(
            "eni-0",
            "2001:db8::/80".parse().unwrap(),
            Duration::from_secs(30),
        ));
        let data = file.read().unwrap();
        assert_eq!(restore(&mut ds, &data, file.path()).unwrap().restored, 1);
        file.write(&ds).unwrap();
        let again = file.read().unwrap();
        assert_eq!(again.allocations[0].ipv6, "2001:db8::5");
        assert!(again.allocations[0].ipv4.is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
