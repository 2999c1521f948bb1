//! gpicl's dataset cache: one folder per dataset in the layout of
//! `../shared/data` (gzipped IDX per split, `classes.txt`), plus a
//! `manifest.json` with the sha256 of every file.
//!
//! Datasets are assembled in a hidden staging folder and renamed into place
//! in one step, so an interrupted fetch or import never leaves a
//! half-written dataset under its final name.

use crate::error::{Result, TaskError};
use crate::idx::{write_idx, IdxArray};
use crate::spec::Split;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// File name of a cached dataset's manifest.
pub const MANIFEST: &str = "manifest.json";

/// The cache folder: `GPICL_CACHE_DIR`, else `$XDG_CACHE_HOME/gpicl/datasets`,
/// else `$HOME/.cache/gpicl/datasets`.
pub fn default_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("GPICL_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    base.join("gpicl").join("datasets")
}

/// What a cached dataset holds and where it came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Dataset name.
    pub name: String,
    /// Provenance, e.g. `hub:ylecun/mnist@<commit>` or `import:<dir>`.
    pub source: String,
    /// Examples per split (`train`, `t10k`).
    pub examples: BTreeMap<String, usize>,
    /// Stored image shape: height, width, channels.
    pub shape: [usize; 3],
    /// sha256 (hex) of every file beside the manifest.
    pub sha256: BTreeMap<String, String>,
}

impl Manifest {
    /// Reads `dir/manifest.json`, or `None` when there is none.
    pub fn read(dir: &Path) -> Result<Option<Self>> {
        let path = dir.join(MANIFEST);
        if !path.is_file() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path).map_err(|source| TaskError::Io {
            path: path.clone(),
            source,
        })?;
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| TaskError::Corrupt {
                path,
                reason: format!("not a gpicl dataset manifest: {e}"),
            })
    }
}

/// sha256 of a file, as lowercase hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let io = |source| TaskError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(format!("{:x}", hasher.finalize()))
}

/// Checks `file` (inside `dir`) against `dir`'s manifest, if it has one.
/// Files the manifest does not list are refused too: they were not written
/// by gpicl.
pub fn verify_file(dir: &Path, file: &Path) -> Result<()> {
    let Some(manifest) = Manifest::read(dir)? else {
        return Ok(());
    };
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let expected = manifest
        .sha256
        .get(&name)
        .ok_or_else(|| TaskError::Corrupt {
            path: file.to_path_buf(),
            reason: format!(
                "not listed in {}: re-fetch or re-import the dataset",
                dir.join(MANIFEST).display()
            ),
        })?;
    let found = sha256_file(file)?;
    if &found != expected {
        return Err(TaskError::HashMismatch {
            path: file.to_path_buf(),
            expected: expected.clone(),
            found,
        });
    }
    Ok(())
}

/// Re-hashes every file a cached dataset's manifest lists.
pub fn verify_dataset(dir: &Path) -> Result<Manifest> {
    let manifest = Manifest::read(dir)?.ok_or_else(|| TaskError::Corrupt {
        path: dir.join(MANIFEST),
        reason: "missing: this folder is not a complete gpicl dataset".into(),
    })?;
    for name in manifest.sha256.keys() {
        let path = dir.join(name);
        if !path.is_file() {
            return Err(TaskError::Corrupt {
                path,
                reason: "listed in the manifest but missing".into(),
            });
        }
        verify_file(dir, &path)?;
    }
    Ok(manifest)
}

/// Names of the datasets in a cache folder (folders with a manifest).
pub fn cached_datasets(cache: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(cache)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join(MANIFEST).is_file())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    names
}

/// A dataset being assembled; renamed into the cache by [`Staging::commit`],
/// removed if dropped before that.
pub struct Staging {
    name: String,
    cache: PathBuf,
    dir: PathBuf,
    manifest: Manifest,
    committed: bool,
    /// `cache/.lock-<name>`, locked for the life of the staging: a second
    /// import or fetch of the same name is refused instead of deleting
    /// this one's staging folder.
    _lock: std::fs::File,
    lock_path: PathBuf,
}

/// Whether the open `file` is still the file at `path`.
fn same_file(file: &std::fs::File, path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (file.metadata(), std::fs::metadata(path)) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (file, path);
        true
    }
}

impl Staging {
    /// Starts assembling dataset `name` in `cache`. `name` must pass
    /// [`crate::names::validate_path_name`]; a second staging of the same
    /// name (another process) is refused while this one lives. Leftovers of
    /// earlier interrupted attempts at the same dataset are removed.
    pub fn new(cache: &Path, name: &str, shape: (usize, usize, usize)) -> Result<Self> {
        crate::names::validate_path_name("dataset name", name)?;
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| TaskError::Io { path, source }
        };
        std::fs::create_dir_all(cache).map_err(io(cache))?;
        let lock_path = cache.join(format!(".lock-{name}"));
        if std::fs::symlink_metadata(&lock_path).is_ok_and(|m| !m.is_file()) {
            return Err(TaskError::Corrupt {
                path: lock_path,
                reason: "is not a regular file (a link?): remove it".into(),
            });
        }
        let lock = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(io(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(TaskError::Corrupt {
                    path: cache.join(name),
                    reason: format!(
                        "dataset `{name}` is being imported or fetched by another process (it holds {}); wait for it to finish",
                        lock_path.display()
                    ),
                })
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(&lock_path)(e)),
        }
        if !same_file(&lock, &lock_path) {
            // The holder before us removed the file between our open and our
            // lock: someone else may hold the new one.
            return Err(TaskError::Corrupt {
                path: cache.join(name),
                reason: format!(
                    "dataset `{name}` is being imported or fetched by another process; wait for it to finish"
                ),
            });
        }
        let prefix = format!(".partial-{name}-");
        // `.partial-<name>-<pid>-<nanos>` exactly: not another dataset
        // whose name starts with this one's.
        let ours = |file: &str| {
            file.strip_prefix(&prefix).is_some_and(|rest| {
                let mut parts = rest.split('-');
                let (Some(pid), Some(nanos), None) = (parts.next(), parts.next(), parts.next())
                else {
                    return false;
                };
                [pid, nanos]
                    .iter()
                    .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            })
        };
        for entry in std::fs::read_dir(cache).map_err(io(cache))?.flatten() {
            if ours(&entry.file_name().to_string_lossy()) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = cache.join(format!("{prefix}{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        Ok(Self {
            name: name.to_string(),
            cache: cache.to_path_buf(),
            dir,
            manifest: Manifest {
                name: name.to_string(),
                source: String::new(),
                examples: BTreeMap::new(),
                shape: [shape.0, shape.1, shape.2],
                sha256: BTreeMap::new(),
            },
            committed: false,
            _lock: lock,
            lock_path,
        })
    }

    /// Writes one split: `images` is `N×H×W` or `N×H×W×C`, `labels` is `N`.
    pub fn write_split(
        &mut self,
        split: Split,
        images: &IdxArray,
        labels: &IdxArray,
    ) -> Result<()> {
        let prefix = split.file_prefix();
        for (kind, array) in [("images-idx3", images), ("labels-idx1", labels)] {
            let file = format!("{prefix}-{kind}-ubyte.gz");
            let path = self.dir.join(&file);
            write_idx(&path, array)?;
            self.manifest.sha256.insert(file, sha256_file(&path)?);
        }
        self.manifest
            .examples
            .insert(prefix.to_string(), labels.dims[0]);
        Ok(())
    }

    /// Writes `classes.txt` (`index<TAB>name` per line).
    /// A name holding a control character (a line break or a tab would
    /// split `classes.txt`) is refused.
    pub fn write_class_names(&mut self, names: &[String]) -> Result<()> {
        let path = self.dir.join("classes.txt");
        if let Some(bad) = names
            .iter()
            .find(|n| n.is_empty() || n.chars().any(char::is_control))
        {
            return Err(TaskError::Corrupt {
                path,
                reason: format!(
                    "class name {bad:?} is empty or holds a control character (a line break or a tab): rename that class folder or label"),
            });
        }
        let text: String = names
            .iter()
            .enumerate()
            .map(|(i, n)| format!("{i}\t{n}\n"))
            .collect();
        std::fs::write(&path, text).map_err(|source| TaskError::Io {
            path: path.clone(),
            source,
        })?;
        self.manifest
            .sha256
            .insert("classes.txt".into(), sha256_file(&path)?);
        Ok(())
    }

    /// Splits written so far.
    pub fn splits(&self) -> usize {
        self.manifest.examples.len()
    }

    /// Writes the manifest and moves the dataset into place, replacing an
    /// older copy. Returns the dataset's folder.
    pub fn commit(mut self, source: String) -> Result<PathBuf> {
        self.manifest.source = source;
        let manifest_path = self.dir.join(MANIFEST);
        let text = serde_json::to_string_pretty(&self.manifest).expect("manifests serialise");
        std::fs::write(&manifest_path, text).map_err(|source| TaskError::Io {
            path: manifest_path.clone(),
            source,
        })?;
        let target = self.cache.join(&self.name);
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| TaskError::Io { path, source }
        };
        if target.exists() {
            let old = self
                .cache
                .join(format!(".old-{}-{}", self.name, std::process::id()));
            std::fs::rename(&target, &old).map_err(io(&target))?;
            std::fs::rename(&self.dir, &target).map_err(io(&target))?;
            let _ = std::fs::remove_dir_all(old);
        } else {
            std::fs::rename(&self.dir, &target).map_err(io(&target))?;
        }
        self.committed = true;
        Ok(target)
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
        // Removed while still held; the next holder checks it locked the
        // file that is at the path.
        let _ = std::fs::remove_file(&self.lock_path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gpicl_testing::absent_path;

    fn arrays(n: usize) -> (IdxArray, IdxArray) {
        (
            IdxArray {
                dims: vec![n, 2, 2],
                data: (0..n * 4).map(|i| i as u8).collect(),
            },
            IdxArray {
                dims: vec![n],
                data: (0..n).map(|i| (i % 10) as u8).collect(),
            },
        )
    }

    #[test]
    fn a_committed_dataset_verifies_and_a_flipped_byte_is_caught() {
        let cache = absent_path("verify");
        let mut staging = Staging::new(&cache, "toy", (2, 2, 1)).unwrap();
        let (images, labels) = arrays(5);
        staging.write_split(Split::Test, &images, &labels).unwrap();
        let dir = staging.commit("test".into()).unwrap();
        let manifest = verify_dataset(&dir).unwrap();
        assert_eq!(manifest.examples["t10k"], 5);
        assert_eq!(cached_datasets(&cache), vec!["toy".to_string()]);

        let file = dir.join("t10k-labels-idx1-ubyte.gz");
        let mut bytes = std::fs::read(&file).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&file, bytes).unwrap();
        match verify_dataset(&dir) {
            Err(TaskError::HashMismatch { path, .. }) => assert_eq!(path, file),
            other => panic!("expected a hash mismatch, got {other:?}"),
        }
        std::fs::remove_dir_all(cache).unwrap();
    }

    #[test]
    fn an_abandoned_staging_leaves_nothing_behind() {
        let cache = absent_path("abandon");
        {
            let mut staging = Staging::new(&cache, "toy", (2, 2, 1)).unwrap();
            let (images, labels) = arrays(3);
            staging.write_split(Split::Test, &images, &labels).unwrap();
            let roots = crate::DataRoots::only(vec![cache.clone()]);
            assert!(
                roots.available(Split::Test).is_empty(),
                "an unfinished copy is not a dataset"
            );
        }
        assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 0);
        std::fs::remove_dir_all(cache).unwrap();
    }

    #[test]
    fn an_import_name_that_leaves_the_cache_is_refused_and_nothing_outside_is_touched() {
        let root = absent_path("escape");
        let cache = root.join("cache");
        let victim = root.join("victim");
        std::fs::create_dir_all(&victim).unwrap();
        std::fs::write(victim.join("keep.txt"), "mine").unwrap();
        std::fs::create_dir_all(cache.join(".old-..")).unwrap();
        for name in ["../escaped", "../victim", "..", "a/b", ".hidden"] {
            let err = Staging::new(&cache, name, (2, 2, 1)).err().expect(name);
            assert!(
                matches!(err, TaskError::UnsafeName { .. })
                    && err.to_string().contains("dataset name"),
                "{err}"
            );
        }
        assert!(!root.join("escaped").exists());
        assert_eq!(
            std::fs::read_to_string(victim.join("keep.txt")).unwrap(),
            "mine"
        );
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn a_second_staging_of_the_same_name_is_refused_and_leaves_the_first_intact() {
        let cache = absent_path("concurrent");
        let mut first = Staging::new(&cache, "toy", (2, 2, 1)).unwrap();
        let err = Staging::new(&cache, "toy", (2, 2, 1))
            .err()
            .expect("refused");
        assert!(err.to_string().contains("another process"), "{err}");
        let (images, labels) = arrays(3);
        first.write_split(Split::Test, &images, &labels).unwrap();
        let dir = first.commit("first".into()).unwrap();
        verify_dataset(&dir).unwrap();
        // Once the first is done, the name is free again.
        drop(Staging::new(&cache, "toy", (2, 2, 1)).unwrap());
        std::fs::remove_dir_all(cache).unwrap();
    }

    #[test]
    fn class_names_with_line_breaks_or_tabs_are_refused() {
        let cache = absent_path("class-names");
        let mut staging = Staging::new(&cache, "toy", (2, 2, 1)).unwrap();
        for bad in ["cat\n2\tdog", "a\tb", ""] {
            let err = staging
                .write_class_names(&["ok".into(), bad.to_string()])
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("classes.txt") && err.contains("control"),
                "{err}"
            );
        }
        staging
            .write_class_names(&["=HYPERLINK(x)".into(), "b".into()])
            .unwrap();
        drop(staging);
        std::fs::remove_dir_all(cache).unwrap();
    }

    #[test]
    fn committing_again_replaces_the_old_copy() {
        let cache = absent_path("replace");
        for n in [3, 4] {
            let mut staging = Staging::new(&cache, "toy", (2, 2, 1)).unwrap();
            let (images, labels) = arrays(n);
            staging.write_split(Split::Test, &images, &labels).unwrap();
            staging.commit(format!("run {n}")).unwrap();
        }
        let manifest = verify_dataset(&cache.join("toy")).unwrap();
        assert_eq!(manifest.source, "run 4");
        assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 1);
        std::fs::remove_dir_all(cache).unwrap();
    }
}
