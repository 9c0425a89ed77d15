//! The files DPDK's EAL keeps on the host for a `--file-prefix`: its runtime folder
//! (`/var/run/dpdk/PREFIX`, where secondary processes and telemetry clients find the primary)
//! and one file per hugepage (`PREFIXmap_N` in a hugetlbfs mount). EAL leaves the hugepage files
//! behind at exit, each still holding its hugepage, until a primary with the same prefix
//! starts; rvsd removes its own at a clean stop and the test harness after a killed rvsd.
//! Plain file system work, no DPDK.

use std::path::{Path, PathBuf};

/// Where EAL keeps the runtime folder of `prefix` when run by root.
pub fn runtime_dir(prefix: &str) -> PathBuf {
    Path::new("/var/run/dpdk").join(prefix)
}

/// Every hugepage file of `prefix` (`PREFIXmap_N`) in the hugetlbfs mounts of /proc/mounts.
pub fn hugepage_files(prefix: &str) -> Vec<PathBuf> {
    if prefix.is_empty() {
        return Vec::new();
    }
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let ours = format!("{prefix}map_");
    let mut files = Vec::new();
    for line in mounts.lines() {
        let mut fields = line.split_whitespace();
        let (Some(dir), Some("hugetlbfs")) = (fields.nth(1), fields.next()) else {
            continue;
        };
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            if name.to_str().is_some_and(|n| is_page_file(n, &ours)) {
                files.push(e.path());
            }
        }
    }
    files
}

/// `name` is `ours` followed by a page number (so prefix `rvs` never claims `rvs-2map_0`).
fn is_page_file(name: &str, ours: &str) -> bool {
    name.strip_prefix(ours)
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Removes the hugepage files of `prefix`; how many went.
pub fn remove_hugepage_files(prefix: &str) -> usize {
    hugepage_files(prefix)
        .iter()
        .filter(|f| std::fs::remove_file(f).is_ok())
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_files_are_the_prefix_and_a_number() {
        assert!(is_page_file("rvsmap_0", "rvsmap_"));
        assert!(is_page_file("rvsmap_17", "rvsmap_"));
        assert!(!is_page_file("rvsmap_", "rvsmap_"));
        assert!(!is_page_file("rvs-2map_0", "rvsmap_"));
        assert!(!is_page_file("rvsmap_0.lock", "rvsmap_"));
        assert!(hugepage_files("").is_empty());
        assert_eq!(runtime_dir("rvs"), Path::new("/var/run/dpdk/rvs"));
    }
}
