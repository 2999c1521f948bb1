//! Helpers shared by the tests of every gpicl crate (a dev-dependency only,
//! never linked into a library or the command line).
//!
//! - [`scratch_dir`]: a fresh, empty folder under the system's temporary
//!   folder, unique to the process, the call site's tag and the call, so
//!   tests running in parallel never share files.
//! - [`absent_path`]: the same, but not created, for commands that must
//!   create their output folder themselves.
//! - [`fuzzing`]: the property-test harness for readers of outside bytes
//!   (seeded cases, byte-level mutations, the largest-allocation probe).
//!
//! ```
//! let dir = gpicl_testing::scratch_dir("doc-example");
//! std::fs::write(dir.join("a.txt"), "hello").unwrap();
//! assert!(dir.join("a.txt").is_file());
//! ```
#![warn(missing_docs)]

pub mod fuzzing;

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

static CALLS: AtomicUsize = AtomicUsize::new(0);

/// A fresh, empty folder `gpicl-<tag>-<pid>-<n>` in the temporary folder.
///
/// The process id keeps concurrent test binaries apart and the call counter
/// keeps two tests of one binary apart even when they pass the same tag.
/// Anything left there by an earlier process with the same id is removed.
pub fn scratch_dir(tag: &str) -> PathBuf {
    let n = CALLS.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("gpicl-{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("creating the scratch folder {}: {e}", dir.display()));
    dir
}

/// A unique path like [`scratch_dir`]'s that does not exist yet (its
/// parent does), for tests of commands that create their own folder.
pub fn absent_path(tag: &str) -> PathBuf {
    let dir = scratch_dir(tag);
    std::fs::remove_dir(&dir)
        .unwrap_or_else(|e| panic!("removing the scratch folder {}: {e}", dir.display()));
    dir
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_calls_with_one_tag_get_two_empty_folders() {
        let a = scratch_dir("same");
        std::fs::write(a.join("left-over"), "x").unwrap();
        let b = scratch_dir("same");
        assert_ne!(a, b);
        assert!(std::fs::read_dir(&b).unwrap().next().is_none());
        assert!(a.join("left-over").is_file());
    }

    #[test]
    fn an_absent_path_is_unique_and_not_there_yet() {
        let a = absent_path("absent");
        assert!(!a.exists());
        assert!(a.parent().unwrap().is_dir());
        assert_ne!(a, absent_path("absent"));
    }
}
