//! Network namespaces: opening one by path, and making a netlink connection whose socket lives
//! in it. The calling thread enters the namespace only for the `socket()` call and leaves at
//! once; every request afterwards goes through the socket, which keeps its namespace.

use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd};

use nix::sched::{CloneFlags, setns};
use rtnetlink::Handle;

use crate::{DataplaneError, Result};

/// An open network namespace.
#[derive(Debug)]
pub struct Netns {
    path: String,
    file: File,
}

impl Netns {
    /// Open the namespace at `path` (`/var/run/netns/x`, `/proc/<pid>/ns/net`).
    pub fn open(path: &str) -> Result<Self> {
        let file = File::open(path).map_err(|source| DataplaneError::Netns {
            path: path.to_string(),
            source,
        })?;
        Ok(Netns {
            path: path.to_string(),
            file,
        })
    }

    /// The namespace of the calling thread.
    pub fn current() -> Result<Self> {
        Self::open("/proc/thread-self/ns/net")
    }

    /// Its path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Its file descriptor (for `IFLA_NET_NS_FD`).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    fn enter(&self) -> Result<()> {
        setns(self.file.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|e| DataplaneError::Netns {
            path: self.path.clone(),
            source: std::io::Error::from(e),
        })
    }
}

/// A netlink connection in the calling thread's namespace, driven on the current tokio runtime.
pub fn connect_here() -> Result<Handle> {
    let (conn, handle, _) = rtnetlink::new_connection().map_err(|source| DataplaneError::Io {
        what: "open a netlink socket".into(),
        source,
    })?;
    tokio::spawn(conn);
    Ok(handle)
}

/// A netlink connection whose socket lives in `ns`.
pub fn connect_in(ns: &Netns) -> Result<Handle> {
    let home = Netns::current()?;
    ns.enter()?;
    let made = rtnetlink::new_connection();
    // Leaving must succeed: everything after this runs in the host namespace.
    home.enter()?;
    let (conn, handle, _) = made.map_err(|source| DataplaneError::Io {
        what: format!("open a netlink socket in {}", ns.path()),
        source,
    })?;
    tokio::spawn(conn);
    Ok(handle)
}
