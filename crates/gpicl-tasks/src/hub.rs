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
pub use crate::hub_files::HubOptions;
use crate::idx::IdxArray;
use crate::parquet_images::read_shard;
use hf_hub::api::sync::ApiBuilder;
use hf_hub::{Cache, Repo, RepoType};
use std::path::{Path, PathBuf};

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
    crate::hub_files::validate_repo(source.repo, &revision)?;
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
    // `info` only reads the listing; files are downloaded by `hub_files`,
    // never by hf-hub (see there why).
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
        let mut names: Vec<String> = listing
            .siblings
            .iter()
            .map(|s| s.rfilename.clone())
            .filter(|f| f.starts_with(source.prefix(split)) && f.ends_with(".parquet"))
            .collect();
        names.sort();
        let files = crate::hub_files::fetch_files(
            opts,
            &Repo::with_revision(
                source.repo.to_string(),
                RepoType::Dataset,
                revision.to_string(),
            ),
            revision,
            &listing.sha,
            &names,
            &|_| Ok(()),
            &|reason| hub_error(info, "download failed", reason),
        )?;
        for path in &files {
            check_blob(path)?;
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
    crate::names::validate_path_name("Hub commit", &commit)?;
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

/// The file listing every file of an exported learner with its sha256,
/// written by `cargo xtask export` and checked after every download.
pub const MODEL_MANIFEST: &str = "manifest.json";

/// A learner on the Hub: `hf://owner/repo` or `hf://owner/repo@revision`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubModelRef {
    /// `owner/repo`.
    pub repo: String,
    /// Branch, tag or commit; `main` when not given.
    pub revision: String,
}

impl HubModelRef {
    /// Parses `hf://owner/repo[@revision]`; `None` for anything else (a
    /// local path).
    pub fn parse(text: &str) -> Option<Result<Self>> {
        let rest = text.strip_prefix("hf://")?;
        let (repo, revision) = rest.split_once('@').unwrap_or((rest, "main"));
        Some(
            crate::hub_files::validate_repo(repo, revision)
                .map(|()| Self {
                    repo: repo.into(),
                    revision: revision.into(),
                })
                .map_err(|e| TaskError::HubModel {
                    repo: rest.into(),
                    reason: format!("expected hf://owner/repo or hf://owner/repo@revision: {e}"),
                }),
        )
    }
}

/// Brings a learner's repository into the Hub cache (or, offline, finds it
/// there) and returns its snapshot folder, every file checked against the
/// repository's [`MODEL_MANIFEST`].
pub fn fetch_model(model: &HubModelRef, opts: &HubOptions) -> Result<PathBuf> {
    let err = |reason: String| TaskError::HubModel {
        repo: model.repo.clone(),
        reason,
    };
    crate::hub_files::validate_repo(&model.repo, &model.revision)?;
    let repo = Repo::with_revision(model.repo.clone(), RepoType::Model, model.revision.clone());
    let snapshot = if opts.offline {
        let root = opts.hub_cache.join(repo.folder_name());
        let commit = std::fs::read_to_string(root.join("refs").join(&model.revision))
            .map(|c| c.trim().to_string())
            .or_else(|_| {
                (model.revision.len() == 40)
                    .then(|| model.revision.clone())
                    .ok_or(())
            })
            .map_err(|_| {
                err(format!(
                    "HF_HUB_OFFLINE is set and the Hub cache {} holds no snapshot of revision `{}`: fetch once with network access, or pass a local folder",
                    root.display(),
                    model.revision
                ))
            })?;
        crate::names::validate_path_name("Hub commit", &commit)?;
        let snapshot = root.join("snapshots").join(commit);
        if !snapshot.join(MODEL_MANIFEST).is_file() {
            return Err(err(format!(
                "HF_HUB_OFFLINE is set and the cached snapshot {} is incomplete (no {MODEL_MANIFEST})",
                snapshot.display()
            )));
        }
        snapshot
    } else {
        let api = ApiBuilder::from_cache(Cache::new(opts.hub_cache.clone()))
            .with_endpoint(opts.endpoint.clone())
            .with_token(opts.token.clone())
            .with_progress(opts.progress)
            .build()
            .map_err(|e| err(format!("cannot start the Hub client: {e}")))?;
        let api_repo = api.repo(repo.clone());
        let listing = api_repo.info().map_err(|e| {
            err(format!(
                "cannot list revision `{}` on {}: {e}. Check the network or HF_ENDPOINT, or set HF_HUB_OFFLINE=1 to use the Hub cache",
                model.revision, opts.endpoint
            ))
        })?;
        if !listing
            .siblings
            .iter()
            .any(|s| s.rfilename == MODEL_MANIFEST)
        {
            return Err(err(format!(
                "has no {MODEL_MANIFEST}: upload a folder written by `cargo xtask export`"
            )));
        }
        let names: Vec<String> = listing
            .siblings
            .iter()
            .map(|s| s.rfilename.clone())
            .collect();
        let files = crate::hub_files::fetch_files(
            opts,
            &repo,
            &model.revision,
            &listing.sha,
            &names,
            &verify_model_manifest,
            &err,
        )?;
        for path in &files {
            check_blob(path)?;
        }
        crate::hub_files::repo_root(opts, &repo)
            .join("snapshots")
            .join(&listing.sha)
    };
    verify_model_manifest(&snapshot)?;
    Ok(snapshot)
}

/// Checks every file [`MODEL_MANIFEST`] in `dir` lists against its sha256.
pub fn verify_model_manifest(dir: &Path) -> Result<()> {
    let path = dir.join(MODEL_MANIFEST);
    let text = std::fs::read_to_string(&path).map_err(|source| TaskError::Io {
        path: path.clone(),
        source,
    })?;
    let manifest: ModelManifest = serde_json::from_str(&text).map_err(|e| TaskError::Corrupt {
        path: path.clone(),
        reason: format!("not a learner manifest: {e}"),
    })?;
    for (name, expected) in &manifest.sha256 {
        if let Err(e) = crate::names::validate_relative_path("learner file", name) {
            return Err(TaskError::Corrupt {
                path: path.clone(),
                reason: format!("lists an unsafe path: {e}"),
            });
        }
        let file = dir.join(name);
        let found = sha256_file(&file)?;
        if &found != expected {
            return Err(TaskError::HashMismatch {
                path: file,
                expected: expected.clone(),
                found,
            });
        }
    }
    Ok(())
}

/// The sha256 of every file of an exported learner, by `/`-separated path.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ModelManifest {
    /// `path → sha256` (lower-case hex).
    pub sha256: std::collections::BTreeMap<String, String>,
}

impl ModelManifest {
    /// Hashes every file under `dir` except the manifest itself.
    pub fn of_dir(dir: &Path) -> Result<Self> {
        let mut files = Vec::new();
        walk(dir, dir, &mut files);
        let mut sha256 = std::collections::BTreeMap::new();
        for (rel, path) in files {
            if rel != MODEL_MANIFEST {
                sha256.insert(rel, sha256_file(&path)?);
            }
        }
        Ok(Self { sha256 })
    }

    /// Writes `dir/manifest.json`.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let path = dir.join(MODEL_MANIFEST);
        let text = serde_json::to_string_pretty(self).expect("a manifest serialises");
        std::fs::write(&path, text + "\n").map_err(|source| TaskError::Io { path, source })
    }
}
