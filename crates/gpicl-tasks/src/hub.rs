//! Fetching datasets from the Hugging Face Hub with `hf-hub`: parquet
//! shards are downloaded into the Hub's own cache (`$HF_HOME/hub`), checked
//! against their sha256, decoded and stored in gpicl's cache as gzipped IDX.
//!
//! The Hub's conventions are honoured: `HF_ENDPOINT` (a mirror or a test
//! server), `HF_HOME` (where the Hub cache and the `token` file live),
//! `HF_TOKEN` (takes precedence over the token file) and `HF_HUB_OFFLINE`
//! (use only what the Hub cache already holds).

use crate::cache::{sha256_file, Staging};
use crate::catalog::{DatasetInfo, HubSource};
use crate::dataset::Split;
use crate::error::{Result, TaskError};
use crate::idx::IdxArray;
use crate::parquet_images::read_shard;
use hf_hub::api::sync::ApiBuilder;
use hf_hub::{Cache, Repo, RepoType};
use std::path::{Path, PathBuf};

/// How to reach the Hub.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubOptions {
    /// Base URL, default `https://huggingface.co`.
    pub endpoint: String,
    /// The Hub file cache, default `$HF_HOME/hub` or `~/.cache/huggingface/hub`.
    pub hub_cache: PathBuf,
    /// Access token sent as `Authorization: Bearer …`.
    pub token: Option<String>,
    /// Never touch the network; use only the Hub cache.
    pub offline: bool,
    /// Overrides the catalogue's pinned revision.
    pub revision: Option<String>,
    /// Draw a progress bar per download.
    pub progress: bool,
}

impl HubOptions {
    /// Options from the Hub's environment variables.
    pub fn from_env() -> Self {
        let hf_home = std::env::var_os("HF_HOME")
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/huggingface"))
            })
            .unwrap_or_else(|| PathBuf::from(".cache/huggingface"));
        let hub_cache = hf_home.join("hub");
        let token = std::env::var("HF_TOKEN")
            .ok()
            .filter(|t| !t.trim().is_empty())
            .or_else(|| Cache::new(hub_cache.clone()).token());
        let offline = std::env::var("HF_HUB_OFFLINE")
            .map(|v| matches!(v.to_lowercase().as_str(), "1" | "true" | "yes" | "on"))
            .unwrap_or(false);
        Self {
            endpoint: std::env::var("HF_ENDPOINT")
                .ok()
                .filter(|e| !e.is_empty())
                .unwrap_or_else(|| "https://huggingface.co".into()),
            hub_cache,
            token,
            offline,
            revision: None,
            progress: true,
        }
    }
}

/// Fetches `info`'s dataset into `cache` (replacing an older copy) and
/// returns its folder.
pub fn fetch(info: &DatasetInfo, opts: &HubOptions, cache: &Path) -> Result<PathBuf> {
    let source = info.hub.ok_or_else(|| TaskError::Hub {
        dataset: info.name.into(),
        reason: format!(
            "has no Hugging Face Hub source; import a local copy with `cargo xtask data import {} DIR`",
            info.name
        ),
    })?;
    let revision = opts
        .revision
        .clone()
        .unwrap_or_else(|| source.revision.to_string());
    let (commit, shards) = if opts.offline {
        offline_shards(info, &source, &revision, opts)?
    } else {
        online_shards(info, &source, &revision, opts)?
    };

    let mut staging = Staging::new(cache, info.name, info.shape)?;
    for (split, files) in shards {
        if files.is_empty() {
            continue;
        }
        let (images, labels) = decode_split(info, &source, &files)?;
        staging.write_split(split, &images, &labels)?;
    }
    if staging.splits() == 0 {
        return Err(TaskError::Hub {
            dataset: info.name.into(),
            reason: format!(
                "{}@{revision} has no parquet files starting with `{}` or `{}`",
                source.repo, source.train_prefix, source.test_prefix
            ),
        });
    }
    staging.commit(format!("hub:{}@{commit}", source.repo))
}

type Shards = Vec<(Split, Vec<PathBuf>)>;

fn hub_error(info: &DatasetInfo, what: &str, e: impl std::fmt::Display) -> TaskError {
    TaskError::Hub {
        dataset: info.name.into(),
        reason: format!(
            "{what}: {e}. Check the network or HF_ENDPOINT, set HF_HUB_OFFLINE=1 to use the Hub cache, or import a local copy with `cargo xtask data import {} DIR`",
            info.name
        ),
    }
}

fn online_shards(
    info: &DatasetInfo,
    source: &HubSource,
    revision: &str,
    opts: &HubOptions,
) -> Result<(String, Shards)> {
    let api = ApiBuilder::from_cache(Cache::new(opts.hub_cache.clone()))
        .with_endpoint(opts.endpoint.clone())
        .with_token(opts.token.clone())
        .with_progress(opts.progress)
        .build()
        .map_err(|e| hub_error(info, "cannot start the Hub client", e))?;
    let repo = api.repo(Repo::with_revision(
        source.repo.to_string(),
        RepoType::Dataset,
        revision.to_string(),
    ));
    let listing = repo.info().map_err(|e| {
        hub_error(
            info,
            &format!(
                "cannot list {}@{revision} on {}",
                source.repo, opts.endpoint
            ),
            e,
        )
    })?;
    let mut shards = Vec::new();
    for split in [Split::Train, Split::Test] {
        let mut names: Vec<&str> = listing
            .siblings
            .iter()
            .map(|s| s.rfilename.as_str())
            .filter(|f| f.starts_with(source.prefix(split)) && f.ends_with(".parquet"))
            .collect();
        names.sort();
        let mut files = Vec::new();
        for name in names {
            let path = repo
                .get(name)
                .map_err(|e| hub_error(info, &format!("downloading {name}"), e))?;
            check_blob(&path)?;
            files.push(path);
        }
        shards.push((split, files));
    }
    Ok((listing.sha, shards))
}

/// The Hub names a large file's blob by its sha256 (its ETag); a blob whose
/// content does not match was corrupted on the way and is removed.
fn check_blob(pointer: &Path) -> Result<()> {
    let blob = std::fs::canonicalize(pointer).map_err(|source| TaskError::Io {
        path: pointer.to_path_buf(),
        source,
    })?;
    let etag = blob
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    if etag.len() != 64 || !etag.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(());
    }
    let found = sha256_file(&blob)?;
    if found != etag.to_lowercase() {
        let _ = std::fs::remove_file(&blob);
        let _ = std::fs::remove_file(pointer);
        return Err(TaskError::HashMismatch {
            path: pointer.to_path_buf(),
            expected: etag,
            found,
        });
    }
    Ok(())
}

fn offline_shards(
    info: &DatasetInfo,
    source: &HubSource,
    revision: &str,
    opts: &HubOptions,
) -> Result<(String, Shards)> {
    let repo = Repo::with_revision(
        source.repo.to_string(),
        RepoType::Dataset,
        revision.to_string(),
    );
    let root = opts.hub_cache.join(repo.folder_name());
    let missing = || {
        TaskError::Hub {
        dataset: info.name.into(),
        reason: format!(
            "HF_HUB_OFFLINE is set and the Hub cache {} holds no snapshot of {}@{revision}: fetch once with network access, or import a local copy with `cargo xtask data import {} DIR`",
            root.display(),
            source.repo,
            info.name
        ),
    }
    };
    let commit = match std::fs::read_to_string(root.join("refs").join(revision)) {
        Ok(commit) => commit.trim().to_string(),
        Err(_) if revision.len() == 40 => revision.to_string(),
        Err(_) => return Err(missing()),
    };
    let snapshot = root.join("snapshots").join(&commit);
    if !snapshot.is_dir() {
        return Err(missing());
    }
    let mut all = Vec::new();
    walk(&snapshot, &snapshot, &mut all);
    all.sort();
    let shards: Shards = [Split::Train, Split::Test]
        .into_iter()
        .map(|split| {
            let files = all
                .iter()
                .filter(|(rel, _)| {
                    rel.starts_with(source.prefix(split)) && rel.ends_with(".parquet")
                })
                .map(|(_, path)| path.clone())
                .collect();
            (split, files)
        })
        .collect();
    if shards.iter().all(|(_, f)| f.is_empty()) {
        return Err(missing());
    }
    for (_, files) in &shards {
        for file in files {
            check_blob(file)?;
        }
    }
    Ok((commit, shards))
}

/// Every file under `dir`, with its `/`-separated path relative to `root`.
fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            walk(root, &path, out);
        } else if let Ok(rel) = path.strip_prefix(root) {
            let rel = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().to_string())
                .collect::<Vec<_>>()
                .join("/");
            out.push((rel, path));
        }
    }
}

fn decode_split(
    info: &DatasetInfo,
    source: &HubSource,
    files: &[PathBuf],
) -> Result<(IdxArray, IdxArray)> {
    let (h, w, c) = info.shape;
    let mut images = Vec::new();
    let mut labels = Vec::new();
    for file in files {
        let shard = read_shard(
            file,
            source.image_column,
            source.label_column,
            info.shape,
            info.classes,
        )?;
        images.extend(shard.images);
        labels.extend(shard.labels);
    }
    let n = labels.len();
    let dims = if c == 1 {
        vec![n, h, w]
    } else {
        vec![n, h, w, c]
    };
    Ok((
        IdxArray { dims, data: images },
        IdxArray {
            dims: vec![n],
            data: labels,
        },
    ))
}
