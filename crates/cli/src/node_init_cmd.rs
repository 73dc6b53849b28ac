//! `vpc-cni node-init` (and the program named `aws-vpc-cni-init`, upstream's init container
//! entrypoint): copy the bundled CNI plugins into the host's CNI bin dir (each file written to a
//! temporary name and renamed, so kubelet never runs half a binary), find the primary interface
//! by the IMDS MAC, and set upstream's sysctls. Any failure exits 1, so the pod never starts.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// Copies every regular file of --source-dir except this program into HOST_CNI_BIN_PATH, finds
/// the primary interface (the link whose MAC is IMDS `mac`), and sets rp_filter=2 on it,
/// tcp_early_demux per DISABLE_TCP_EARLY_DEMUX, and with ENABLE_IPv6 (or ENABLE_V6_EGRESS)
/// IPv6 forwarding and accept_ra=2 on the primary interface, as upstream's init container.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where the plugins are (default: this program's directory, `/init` in the image).
    #[arg(long, value_name = "DIR")]
    source_dir: Option<PathBuf>,
    /// Host CNI bin dir [env HOST_CNI_BIN_PATH].
    #[arg(long, env = "HOST_CNI_BIN_PATH", default_value = "/host/opt/cni/bin")]
    cni_bin_dir: PathBuf,
    /// The primary interface (default: the link whose MAC is IMDS `mac`).
    #[arg(long, value_name = "IFNAME")]
    primary_interface: Option<String>,
    /// Root of the sysctl tree (tests point it elsewhere).
    #[arg(long, default_value = "/proc/sys", hide = true)]
    proc_sys: PathBuf,
    /// Root of the network class tree, for the MAC lookup (tests point it elsewhere).
    #[arg(long, default_value = "/sys/class/net", hide = true)]
    sys_class_net: PathBuf,
}

/// Copy the plugins; the installed paths.
fn copy_plugins(src: &Path, dst: &Path, me: Option<&Path>) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dst)
        .with_context(|| format!("HOST_CNI_BIN_PATH={}: cannot create it", dst.display()))?;
    let mut names: Vec<PathBuf> = std::fs::read_dir(src)
        .with_context(|| format!("reading the plugin directory {}", src.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .filter(|p| me.is_none_or(|me| !same_file(p, me)))
        .collect();
    names.sort();
    if names.is_empty() {
        bail!("no plugin files in {}", src.display());
    }
    names
        .iter()
        .map(|p| crate::init_cmd::install_file(p, dst))
        .collect()
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// The link of `/sys/class/net` whose address is `mac`.
fn link_by_mac(root: &Path, mac: &str) -> anyhow::Result<String> {
    let want = mac.trim().to_ascii_lowercase();
    for e in std::fs::read_dir(root).with_context(|| format!("reading {}", root.display()))? {
        let e = e?;
        let addr = std::fs::read_to_string(e.path().join("address")).unwrap_or_default();
        if addr.trim().eq_ignore_ascii_case(&want) {
            return Ok(e.file_name().to_string_lossy().into_owned());
        }
    }
    bail!("no network interface has the primary ENI's MAC {want} (IMDS `mac`)")
}

#[cfg(feature = "aws")]
fn imds_mac() -> anyhow::Result<String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        vpc_cni_aws::Imds::new()
            .required("mac")
            .await
            .map_err(|e| anyhow::anyhow!("IMDS mac: {e}"))
    })
}

#[cfg(not(feature = "aws"))]
fn imds_mac() -> anyhow::Result<String> {
    bail!("this vpc-cni was built without the `aws` feature: give --primary-interface")
}

fn write_sysctl(root: &Path, key: &str, value: &str, only_if_present: bool) -> anyhow::Result<()> {
    let path = root.join(key);
    if only_if_present && !path.exists() {
        return Ok(());
    }
    std::fs::write(&path, value).with_context(|| format!("sysctl {key}={value}"))?;
    eprintln!("sysctl {key} = {value}");
    Ok(())
}

/// Run the command.
pub fn run(args: Args) -> anyhow::Result<()> {
    let go = crate::init_cmd::go_bool_env;
    let disable_demux = go("DISABLE_TCP_EARLY_DEMUX")?;
    let ipv6 = go("ENABLE_IPv6")?;
    let v6_egress = go("ENABLE_V6_EGRESS")?;
    // The path it was started as (`/init/aws-vpc-cni-init`), not the binary a link points to.
    let me = crate::INVOKED_AS
        .get()
        .filter(|p| p.parent().is_some_and(|d| !d.as_os_str().is_empty()))
        .cloned()
        .or_else(|| std::env::current_exe().ok());
    let src = match &args.source_dir {
        Some(d) => d.clone(),
        None => me
            .as_deref()
            .and_then(Path::parent)
            .context("cannot tell this program's directory: give --source-dir")?
            .to_path_buf(),
    };
    for p in copy_plugins(&src, &args.cni_bin_dir, me.as_deref())? {
        eprintln!("installed {}", p.display());
    }
    let primary = match &args.primary_interface {
        Some(i) => i.clone(),
        None => link_by_mac(&args.sys_class_net, &imds_mac()?)?,
    };
    eprintln!("primary interface: {primary}");
    let root = &args.proc_sys;
    write_sysctl(
        root,
        &format!("net/ipv4/conf/{primary}/rp_filter"),
        "2",
        false,
    )?;
    write_sysctl(
        root,
        "net/ipv4/tcp_early_demux",
        if disable_demux { "0" } else { "1" },
        true,
    )?;
    if ipv6 {
        write_sysctl(root, "net/ipv6/conf/all/disable_ipv6", "0", false)?;
    }
    if ipv6 || v6_egress {
        write_sysctl(root, "net/ipv6/conf/all/forwarding", "1", false)?;
        write_sysctl(
            root,
            &format!("net/ipv6/conf/{primary}/accept_ra"),
            "2",
            false,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugins_copied_except_itself_and_the_primary_found_by_mac() {
        let d = tempfile::tempdir().unwrap();
        let (src, dst, net) = (
            d.path().join("init"),
            d.path().join("bin"),
            d.path().join("net"),
        );
        std::fs::create_dir_all(src.join("subdir")).unwrap();
        for f in ["portmap", "host-local", "aws-vpc-cni-init"] {
            std::fs::write(src.join(f), f).unwrap();
        }
        let me = src.join("aws-vpc-cni-init");
        let got = copy_plugins(&src, &dst, Some(&me)).unwrap();
        assert_eq!(got, vec![dst.join("host-local"), dst.join("portmap")]);
        assert_eq!(
            std::fs::read_to_string(dst.join("portmap")).unwrap(),
            "portmap"
        );
        assert!(!dst.join("aws-vpc-cni-init").exists());
        for (name, mac) in [("lo", "00:00:00:00:00:00"), ("ens5", "0a:1b:2c:3d:4e:5f")] {
            std::fs::create_dir_all(net.join(name)).unwrap();
            std::fs::write(net.join(name).join("address"), format!("{mac}\n")).unwrap();
        }
        assert_eq!(link_by_mac(&net, "0A:1B:2C:3D:4E:5F").unwrap(), "ens5");
        let e = link_by_mac(&net, "02:00:00:00:00:01").unwrap_err();
        assert!(e.to_string().contains("02:00:00:00:00:01"), "{e}");
        let empty = d.path().join("empty");
        std::fs::create_dir_all(&empty).unwrap();
        assert!(copy_plugins(&empty, &dst, None).is_err());
    }
}
