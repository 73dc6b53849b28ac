//! The egress plugin's address leases, kept the way the host-local IPAM plugin keeps them so
//! that a node switching between upstream's binary and this one finds the same state:
//! `<dataDir>/<network>/<ip>` holding `<container id>\r\n<ifname>`, the round-robin cursor in
//! `last_reserved_ip.0`, and an exclusive `flock` on `<dataDir>/<network>/lock` around every
//! change. The range is host-local's default for a subnet: from the second address (the first,
//! network + 1, is the gateway) to the last (IPv4: the one before broadcast).

use std::fs::{self, File, OpenOptions};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use nix::fcntl::{Flock, FlockArg};

/// Errors of the lease store.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// Local I/O.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why.
        source: std::io::Error,
    },
    /// The range has no free address.
    #[error("no free address in {subnet}: {held} leases held in {dir}")]
    Exhausted {
        /// The range.
        subnet: IpNet,
        /// Leases found.
        held: usize,
        /// Where they are.
        dir: String,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> LeaseError {
    let what = what.into();
    move |source| LeaseError::Io { what, source }
}

/// host-local's line break between the container ID and the interface name.
const LINE_BREAK: &str = "\r\n";
/// host-local's cursor file for range set 0.
const LAST_RESERVED: &str = "last_reserved_ip.0";

/// The leases of one network.
#[derive(Debug, Clone)]
pub struct Leases {
    dir: PathBuf,
}

/// The gateway and the first and last address host-local hands out from `subnet`.
pub fn range(subnet: IpNet) -> (IpAddr, u128, u128) {
    let (net, last) = match subnet {
        IpNet::V4(n) => (
            u128::from(u32::from(n.network())),
            u128::from(u32::from(n.broadcast())).saturating_sub(1),
        ),
        IpNet::V6(n) => (u128::from(n.network()), u128::from(n.broadcast())),
    };
    (to_ip(subnet, net + 1), net + 2, last)
}

fn to_ip(subnet: IpNet, v: u128) -> IpAddr {
    match subnet {
        IpNet::V4(_) => IpAddr::V4(Ipv4Addr::from(v as u32)),
        IpNet::V6(_) => IpAddr::V6(Ipv6Addr::from(v)),
    }
}

fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

impl Leases {
    /// The leases of `network` under `data_dir` (created when missing).
    pub fn open(data_dir: &Path, network: &str) -> Result<Self, LeaseError> {
        let dir = data_dir.join(network);
        fs::create_dir_all(&dir).map_err(io(format!("create {}", dir.display())))?;
        Ok(Leases { dir })
    }

    /// Where the leases live.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn lock(&self) -> Result<Flock<File>, LeaseError> {
        let path = self.dir.join("lock");
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io(format!("open {}", path.display())))?;
        Flock::lock(f, FlockArg::LockExclusive).map_err(|(_, e)| LeaseError::Io {
            what: format!("lock {}", path.display()),
            source: std::io::Error::from(e),
        })
    }

    /// Every lease: (address, container ID, interface name).
    pub fn all(&self) -> Result<Vec<(IpAddr, String, String)>, LeaseError> {
        let mut out = Vec::new();
        let entries =
            fs::read_dir(&self.dir).map_err(io(format!("list {}", self.dir.display())))?;
        for e in entries.flatten() {
            let Some(ip) = e
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<IpAddr>().ok())
            else {
                continue;
            };
            let text = fs::read_to_string(e.path()).unwrap_or_default();
            let (id, ifname) = text.split_once(LINE_BREAK).unwrap_or((text.trim(), ""));
            out.push((ip, id.trim().to_string(), ifname.trim().to_string()));
        }
        out.sort();
        Ok(out)
    }

    /// The address leased to (`id`, `ifname`), taking the next free one of `subnet` after the
    /// cursor when there is none yet (an ADD repeated by the runtime gets the same address).
    pub fn reserve(&self, subnet: IpNet, id: &str, ifname: &str) -> Result<IpAddr, LeaseError> {
        let _guard = self.lock()?;
        let all = self.all()?;
        if let Some((ip, _, _)) = all.iter().find(|(_, i, f)| i == id && f == ifname) {
            return Ok(*ip);
        }
        let (_, first, last) = range(subnet);
        let taken: std::collections::BTreeSet<u128> =
            all.iter().map(|(ip, _, _)| to_u128(*ip)).collect();
        let cursor = fs::read_to_string(self.dir.join(LAST_RESERVED))
            .ok()
            .and_then(|t| t.trim().parse::<IpAddr>().ok())
            .map(to_u128)
            .filter(|c| (first..=last).contains(c));
        let size = last.saturating_sub(first) + 1;
        let start = cursor.map_or(first, |c| if c >= last { first } else { c + 1 });
        for k in 0..size {
            let v = first + (start - first + k) % size;
            if taken.contains(&v) {
                continue;
            }
            let ip = to_ip(subnet, v);
            let path = self.dir.join(ip.to_string());
            fs::write(&path, format!("{id}{LINE_BREAK}{ifname}"))
                .map_err(io(format!("write {}", path.display())))?;
            let cur = self.dir.join(LAST_RESERVED);
            fs::write(&cur, ip.to_string()).map_err(io(format!("write {}", cur.display())))?;
            return Ok(ip);
        }
        Err(LeaseError::Exhausted {
            subnet,
            held: all.len(),
            dir: self.dir.display().to_string(),
        })
    }

    /// Drop the leases of (`id`, `ifname`); the addresses released.
    pub fn release(&self, id: &str, ifname: &str) -> Result<Vec<IpAddr>, LeaseError> {
        let _guard = self.lock()?;
        let mut out = Vec::new();
        for (ip, i, f) in self.all()? {
            if i == id && f == ifname {
                let path = self.dir.join(ip.to_string());
                match fs::remove_file(&path) {
                    Ok(()) => out.push(ip),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io(format!("remove {}", path.display()))(e)),
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_local_ranges() {
        let (gw, first, last) = range("169.254.172.0/22".parse().unwrap());
        assert_eq!(gw.to_string(), "169.254.172.1");
        assert_eq!(
            to_ip("169.254.172.0/22".parse().unwrap(), first).to_string(),
            "169.254.172.2"
        );
        assert_eq!(
            to_ip("169.254.172.0/22".parse().unwrap(), last).to_string(),
            "169.254.175.254"
        );
        let v6: IpNet = "fd00::ac:00/118".parse().unwrap();
        let (gw, first, last) = range(v6);
        assert_eq!(gw.to_string(), "fd00::ac:1");
        assert_eq!(to_ip(v6, first).to_string(), "fd00::ac:2");
        assert_eq!(to_ip(v6, last).to_string(), "fd00::ac:3ff");
    }

    #[test]
    fn leases_round_robin_are_idempotent_and_released() {
        let dir = tempfile::tempdir().unwrap();
        let l = Leases::open(dir.path(), "aws-cni").unwrap();
        let net: IpNet = "169.254.172.0/30".parse().unwrap();
        // /30: gateway .1, one address (.2) before the broadcast.
        let a = l.reserve(net, "c1", "eth0").unwrap();
        assert_eq!(a.to_string(), "169.254.172.2");
        assert_eq!(
            l.reserve(net, "c1", "eth0").unwrap(),
            a,
            "same pod, same address"
        );
        let text = fs::read_to_string(dir.path().join("aws-cni/169.254.172.2")).unwrap();
        assert_eq!(text, "c1\r\neth0", "host-local's file format");
        assert!(matches!(
            l.reserve(net, "c2", "eth0"),
            Err(LeaseError::Exhausted { held: 1, .. })
        ));
        assert_eq!(l.release("c1", "eth0").unwrap(), vec![a]);
        assert!(l.release("c1", "eth0").unwrap().is_empty());
        assert_eq!(l.reserve(net, "c2", "eth0").unwrap(), a);
        let wide: IpNet = "169.254.172.0/29".parse().unwrap();
        let b = l.reserve(wide, "c3", "eth0").unwrap();
        assert_eq!(
            b.to_string(),
            "169.254.172.3",
            "after the cursor, not the lowest free"
        );
    }
}
