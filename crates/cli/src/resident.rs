//! The daemon's resident set kept to the code it runs. Most of its RSS is the executable's own
//! file-backed pages, and many of those are there because the kernel reads ahead and maps the
//! neighbours of every page faulted in, not because they run: a daemon that links an HTTP
//! stack, an AWS SDK and a Kubernetes client touches a small part of each, and most of what it
//! touches runs once, at start-up. Two advices on the executable's read-only mappings:
//! `MADV_RANDOM` at start (no read-ahead: a fault brings in the page that is needed) and, once
//! start-up is over, `MADV_PAGEOUT` (the start-up code's pages leave; what the steady state runs
//! is faulted back in, from the page cache when it is still there).
//!
//! The one `unsafe` block of the workspace: `madvise` takes a raw address range.
#![allow(unsafe_code)]

use nix::sys::mman::MmapAdvise;

/// Advise `MADV_RANDOM` on the executable's read-only mappings; how many were advised.
pub fn random_access_executable() -> usize {
    advise_executable(MmapAdvise::MADV_RANDOM)
}

/// Advise `MADV_PAGEOUT` on the executable's read-only mappings; how many were advised.
pub fn page_out_executable() -> usize {
    advise_executable(MmapAdvise::MADV_PAGEOUT)
}

/// `advice` on every read-only (code, constants) mapping of the running executable.
/// Failures (a kernel without the advice, an unreadable `/proc`) leave things as they were.
fn advise_executable(advice: MmapAdvise) -> usize {
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
        let (Some(range), Some(perms)) = (fields.next(), fields.next()) else {
            continue;
        };
        // Writable mappings hold this process's own data: never advised.
        if perms.contains('w') || fields.nth(3) != Some(exe.as_str()) {
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
        // SAFETY: the range is a whole read-only, file-backed mapping of this process as the
        // kernel listed it. Both advices change only read-ahead or residency: the contents
        // stay those of the file, faulted back in on the next access.
        if unsafe { nix::sys::mman::madvise(start, hi - lo, advice) }.is_ok() {
            advised += 1;
        }
    }
    advised
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_advices_reach_the_executable_and_it_keeps_running() {
        // The test binary has at least its code and its constants mapped read-only.
        assert!(random_access_executable() >= 2);
        assert!(page_out_executable() >= 2);
        // Paged-out code faults back in.
        let v: Vec<u64> = (1..=1000).collect();
        assert_eq!(v.iter().sum::<u64>(), 500_500);
        assert!(random_access_executable() >= 2);
    }
}
