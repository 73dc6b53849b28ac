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
    /// Entries dropped because their address is on no attached ENI (upstream: "stale/dead").
    pub dropped: Vec<String>,
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

    /// Read it; a missing file is an empty checkpoint (fresh node).
    pub fn read(&self) -> Result<CheckpointData, CheckpointError> {
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
        let dir = self
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| self.io(e))?;
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "ipam.json".into());
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
            continue;
        }
        let ip: Ipv4Addr = ipv4.parse().map_err(|_| CheckpointError::Corrupt {
            path: path.to_path_buf(),
            reason: format!("entry for container {container_id}: {ipv4:?} is not an IPv4 address"),
        })?;
        let key = IpamKey::new(network_name, container_id, if_name);
        let at = Time((*allocation_timestamp).max(0) as u64 / 1_000_000);
        match ds.restore(key, ip, metadata.clone(), at) {
            Ok(_) => out.restored += 1,
            Err(vpc_cni_ipam::DatastoreError::UnknownCidr(_)) => {
                out.dropped.push(format!("{container_id}/{if_name} {ip}"))
            }
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
