//! The daemon's resident set kept to the code it runs. Most of its RSS is the executable's own
//! file-backed pages, and most of those are there because the kernel reads ahead and maps the
//! neighbours of every page faulted in (fault-around), not because they run: a daemon that
//! links an HTTP stack, an AWS SDK and a Kubernetes client touches a small part of each.
//! `MADV_RANDOM` on the executable's mappings turns read-ahead off for them, so a fault brings in
//! the page that is needed. Pages already resident stay; the advice is taken at start.
//!
//! The one `unsafe` block of the workspace: `madvise` takes a raw address range.
#![allow(unsafe_code)]

/// Advise `MADV_RANDOM` on every mapping of the running executable; how many were advised.
/// Failures (a kernel without the advice, an unreadable `/proc`) leave things as they were.
pub fn random_access_executable() -> usize {
    let Ok(exe) = std::fs::read_link("/proc/self/exe") else {
        return 0;
    };
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return 0;
    };
    let exe = exe.to_string_lossy().into_owned();
    let mut advised = 0;
    for line in maps.lines() {
        let mut fields = line.split_whitespace();
        let (Some(range), Some(_perms)) = (fields.next(), fields.next()) else {
            continue;
        };
        if fields.nth(3) != Some(exe.as_str()) {
            continue;
        }
        let Some((lo, hi)) = range.split_once('-') else {
            continue;
        };
        let (Ok(lo), Ok(hi)) = (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
        else {
            continue;
        };
        let Some(start) = std::ptr::NonNull::new(lo as *mut std::ffi::c_void) else {
            continue;
        };
        // SAFETY: the range is a whole mapping of this process, as the kernel listed it, and
        // MADV_RANDOM only changes read-ahead for it: no memory is freed or changed.
        let r = unsafe {
            nix::sys::mman::madvise(start, hi - lo, nix::sys::mman::MmapAdvise::MADV_RANDOM)
        };
        if r.is_ok() {
            advised += 1;
        }
    }
    advised
}
