//! The checkpoint reader and restore into a datastore with one ENI: any file either restores
//! or is refused with an error; nothing panics.
#![no_main]
use libfuzzer_sys::fuzz_target;
use vpc_cni_ipam::{Datastore, EniSpec, Time};
use vpc_cni_ipamd::checkpoint::{CheckpointFile, restore};

fuzz_target!(|data: &[u8]| {
    // A memory file system when there is one: the reader and writer (fsync included) run for
    // real, ten times faster than on disk.
    let shm = std::path::Path::new("/dev/shm");
    let base = if shm.is_dir() { shm.to_path_buf() } else { std::env::temp_dir() };
    let dir = base.join(format!("vpc-cni-fuzz-ckpt-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let file = CheckpointFile::new(dir.join("ipam.json"));
    if std::fs::write(file.path(), data).is_err() {
        return;
    }
    let Ok(parsed) = file.read() else { return };
    let mut ds = Datastore::new(false, std::time::Duration::from_secs(30));
    let eni = EniSpec {
        id: "eni-1".into(),
        is_primary: true,
        ..Default::default()
    };
    ds.add_eni(eni, Time::ZERO).unwrap();
    for i in 0..8u8 {
        let _ = ds.add_cidr("eni-1", format!("10.0.0.{i}/32").parse().unwrap(), false);
    }
    let _ = restore(&mut ds, &parsed, file.path());
    let _ = file.write(&ds);
});
