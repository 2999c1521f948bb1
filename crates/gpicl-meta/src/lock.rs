//! One process per run directory: an advisory lock on `<dir>/run.lock`,
//! held for the life of a `train` or `sweep` process.
//!
//! The lock is the operating system's (`flock` on Unix, `LockFileEx` on
//! Windows): it is released when its holder exits, however it exits, so a
//! killed run leaves no lock that blocks the next one. The file itself
//! stays and names the last holder, which lets a second process say who
//! holds the folder, and lets the next holder say whose stale lock it took
//! over.

use crate::error::{MetaError, Result};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The lock file's name inside a run or sweep directory.
pub const LOCK_FILE: &str = "run.lock";

/// Who holds (or last held) a lock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockHolder {
    /// Process id.
    pub pid: u32,
    /// When it took the lock, `YYYY-MM-DD HH:MM:SS UTC`.
    pub started: String,
    /// What it was doing (`train`, `sweep`).
    pub purpose: String,
}

/// A held lock; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct RunLock {
    _file: File,
    path: PathBuf,
    /// The previous holder, when this lock was taken over from a process
    /// that had ended without releasing it by removing the file.
    pub took_over_from: Option<LockHolder>,
}

impl RunLock {
    /// Takes the lock of `dir` (created if missing) for `purpose`, or
    /// fails at once with [`MetaError::Locked`] naming the holder.
    pub fn acquire(dir: &Path, purpose: &str) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(MetaError::io(dir))?;
        let path = dir.join(LOCK_FILE);
        if let Ok(meta) = std::fs::symlink_metadata(&path) {
            if !meta.is_file() {
                return Err(MetaError::Corrupt {
                    path,
                    reason: "is not a regular file (a link, a folder or a device); gpicl will not write through it: remove it".into(),
                });
            }
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(MetaError::io(&path))?;
        let previous = read_holder(&mut file);
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let holder = previous.map_or_else(
                    || "another process".to_string(),
                    |h| {
                        format!(
                            "another gpicl {} (PID {}, started {})",
                            h.purpose, h.pid, h.started
                        )
                    },
                );
                return Err(MetaError::Locked {
                    path: dir.to_path_buf(),
                    holder,
                });
            }
            Err(TryLockError::Error(e)) => return Err(MetaError::io(&path)(e)),
        }
        let me = LockHolder {
            pid: std::process::id(),
            started: utc_timestamp(),
            purpose: purpose.to_string(),
        };
        let text = serde_json::to_string(&me).expect("lock holder serialises") + "\n";
        file.set_len(0).map_err(MetaError::io(&path))?;
        file.seek(SeekFrom::Start(0))
            .map_err(MetaError::io(&path))?;
        file.write_all(text.as_bytes())
            .map_err(MetaError::io(&path))?;
        Ok(Self {
            _file: file,
            path,
            took_over_from: previous.filter(|h| h.pid != me.pid),
        })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn read_holder(file: &mut File) -> Option<LockHolder> {
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    serde_json::from_str(text.trim()).ok()
}

/// The current time as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn utc_timestamp() -> String {
    let (date, time) = utc_parts();
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
        date.0, date.1, date.2, time.0, time.1, time.2
    )
}

/// `((year, month, day), (hour, minute, second))` now, in UTC, from the
/// system clock.
pub fn utc_parts() -> ((i64, i64, i64), (u64, u64, u64)) {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    ((year, month, day), (rem / 3600, rem % 3600 / 60, rem % 60))
}

#[cfg(test)]
mod tests {
    use super::*;
    use gpicl_testing::absent_path;

    #[test]
    #[cfg(unix)]
    fn a_symlinked_lock_file_is_refused_and_its_target_left_alone() {
        let dir = gpicl_testing::scratch_dir("lock-link");
        let target = dir.join("precious.txt");
        std::fs::write(&target, "keep me").unwrap();
        let run = dir.join("run");
        std::fs::create_dir_all(&run).unwrap();
        std::os::unix::fs::symlink(&target, run.join(LOCK_FILE)).unwrap();
        let err = RunLock::acquire(&run, "train").unwrap_err().to_string();
        assert!(
            err.contains("run.lock") && err.contains("not a regular file"),
            "{err}"
        );
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep me");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid_and_start() {
        let dir = absent_path("twice");
        let first = RunLock::acquire(&dir, "train").unwrap();
        let err = RunLock::acquire(&dir, "train").unwrap_err().to_string();
        assert!(
            err.contains(&format!("PID {}", std::process::id()))
                && err.contains("UTC")
                && err.contains(&dir.display().to_string()),
            "{err}"
        );
        drop(first);
        RunLock::acquire(&dir, "train").expect("released when dropped");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_lock_left_by_an_ended_process_is_taken_over_and_named() {
        let dir = absent_path("stale");
        std::fs::create_dir_all(&dir).unwrap();
        // What a killed process leaves: the file, but no OS lock on it.
        let dead = LockHolder {
            pid: 999_999,
            started: "2026-01-01 00:00:00 UTC".into(),
            purpose: "train".into(),
        };
        std::fs::write(dir.join(LOCK_FILE), serde_json::to_string(&dead).unwrap()).unwrap();
        let lock = RunLock::acquire(&dir, "sweep").unwrap();
        assert_eq!(lock.took_over_from, Some(dead));
        let now: LockHolder =
            serde_json::from_str(std::fs::read_to_string(lock.path()).unwrap().trim()).unwrap();
        assert_eq!(
            (now.pid, now.purpose.as_str()),
            (std::process::id(), "sweep")
        );
        drop(lock);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn timestamps_are_utc_calendar_dates() {
        let t = utc_timestamp();
        assert_eq!(t.len(), 23, "{t}");
        let ((year, month, day), (h, m, s)) = utc_parts();
        assert!(year >= 2024 && (1..=12).contains(&month) && (1..=31).contains(&day));
        assert!(h < 24 && m < 60 && s < 60);
    }
}
