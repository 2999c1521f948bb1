//! Downloading the files of a Hub repository into the Hub cache.
//!
//! hf-hub 0.4's `ApiRepo::get` joins the server's `ETag` and
//! `X-Repo-Commit` headers onto cache paths before its caller sees them,
//! so a hostile or broken endpoint could write outside `HF_HOME`; that
//! cannot be fixed by validating what we pass to it. gpicl therefore uses
//! hf-hub only to list a repository (`info`, which writes nothing) and
//! downloads files itself: every name (owner, repository, revision, the
//! listed commit and file names) passes [`crate::names`] before it becomes
//! a path, headers never become paths, files land in a temporary folder
//! beside the snapshot, are checked (sha256 against the `ETag` when it is
//! one, and the caller's check, e.g. a learner's manifest) and only then
//! moved into the Hub cache's usual layout (`blobs/<sha256>`,
//! `snapshots/<commit>/<file>`, `refs/<revision>`), which offline mode
//! reads.

use crate::cache::sha256_file;
use crate::error::{Result, TaskError};
use crate::names::{validate_path_name, validate_relative_path};
use hf_hub::{Cache, Repo};
use std::io::{Read, Write};
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

/// The largest file downloaded (64 GiB).
const MAX_FILE_BYTES: u64 = 64 << 30;

/// Checks an `owner/name` repository and a revision against the one rule.
pub(crate) fn validate_repo(repo: &str, revision: &str) -> Result<()> {
    let mut parts = repo.split('/');
    let (Some(owner), Some(name), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(TaskError::UnsafeName {
            what: "Hub repository".into(),
            name: repo.escape_debug().to_string(),
            reason: "expected owner/name".into(),
        });
    };
    validate_path_name("Hub owner", owner)?;
    validate_path_name("Hub repository", name)?;
    validate_path_name("Hub revision", revision)
}

/// The Hub cache folder of `repo`.
pub(crate) fn repo_root(opts: &HubOptions, repo: &Repo) -> PathBuf {
    opts.hub_cache.join(repo.folder_name())
}

/// The URL of `file` at `revision` of `repo`.
fn file_url(opts: &HubOptions, repo: &Repo, revision: &str, file: &str) -> String {
    format!(
        "{}/{}/resolve/{revision}/{file}",
        opts.endpoint.trim_end_matches('/'),
        repo.url()
    )
}

/// Makes sure `files` (validated `/`-separated names) of `repo` at
/// `commit` are in the Hub cache and returns their snapshot paths. Files
/// already there are kept; otherwise all of them are downloaded into a
/// temporary folder, checked there by `check` (given that folder) and
/// moved in. `fail` turns a transport error into the caller's error.
pub(crate) fn fetch_files(
    opts: &HubOptions,
    repo: &Repo,
    revision: &str,
    commit: &str,
    files: &[String],
    check: &dyn Fn(&Path) -> Result<()>,
    fail: &dyn Fn(String) -> TaskError,
) -> Result<Vec<PathBuf>> {
    validate_path_name("Hub commit", commit)?;
    for file in files {
        validate_relative_path("Hub file", file)?;
    }
    let root = repo_root(opts, repo);
    let snapshot = root.join("snapshots").join(commit);
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TaskError::Io { path, source }
    };
    let wanted: Vec<PathBuf> = files.iter().map(|f| snapshot.join(f)).collect();
    if !wanted.iter().all(|p| p.is_file()) {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let staging = Staged(root.join(format!(".partial-{}-{nanos}", std::process::id())));
        std::fs::create_dir_all(&staging.0).map_err(io(&staging.0))?;
        let agent = ureq::AgentBuilder::new()
            .redirects(8)
            .timeout_connect(std::time::Duration::from_secs(30))
            .build();
        let mut hashes = Vec::new();
        for file in files {
            let url = file_url(opts, repo, revision, file);
            let dest = staging.0.join(file);
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent).map_err(io(parent))?;
            }
            hashes.push(download(&agent, opts, &url, file, &dest, fail)?);
        }
        check(&staging.0)?;
        let blobs = root.join("blobs");
        std::fs::create_dir_all(&blobs).map_err(io(&blobs))?;
        for (file, sha) in files.iter().zip(&hashes) {
            let blob = blobs.join(sha);
            let from = staging.0.join(file);
            if !blob.is_file() {
                std::fs::rename(&from, &blob).map_err(io(&blob))?;
            }
            let pointer = snapshot.join(file);
            if let Some(parent) = pointer.parent() {
                std::fs::create_dir_all(parent).map_err(io(parent))?;
            }
            let _ = std::fs::remove_file(&pointer);
            link_or_copy(&blob, &pointer, file).map_err(io(&pointer))?;
        }
        let refs = root.join("refs");
        std::fs::create_dir_all(&refs).map_err(io(&refs))?;
        std::fs::write(refs.join(revision), commit).map_err(io(&refs.join(revision)))?;
    }
    Ok(wanted)
}

/// A temporary download folder, removed when dropped.
struct Staged(PathBuf);

impl Drop for Staged {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Points `pointer` at `blob`: a relative symbolic link on Unix, a copy
/// elsewhere.
fn link_or_copy(blob: &Path, pointer: &Path, file: &str) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        // snapshots/<commit>/<file>: up one per component of `file` and two
        // more to the repository folder.
        let ups = "../".repeat(file.split('/').count() + 1);
        let name = blob.file_name().unwrap_or_default().to_string_lossy();
        std::os::unix::fs::symlink(format!("{ups}blobs/{name}"), pointer)
    }
    #[cfg(not(unix))]
    {
        let _ = file;
        std::fs::copy(blob, pointer).map(|_| ())
    }
}

/// Downloads `url` into `dest` and returns the file's sha256; a file whose
/// `ETag` is a sha256 must match it (the file is removed otherwise).
fn download(
    agent: &ureq::Agent,
    opts: &HubOptions,
    url: &str,
    file: &str,
    dest: &Path,
    fail: &dyn Fn(String) -> TaskError,
) -> Result<String> {
    let mut request = agent.get(url).set("User-Agent", "gpicl");
    if let Some(token) = &opts.token {
        request = request.set("Authorization", &format!("Bearer {token}"));
    }
    let response = request
        .call()
        .map_err(|e| fail(format!("downloading {file}: {e}")))?;
    let etag = response
        .header("x-linked-etag")
        .or_else(|| response.header("etag"))
        .map(|e| e.replace('"', "").trim().to_lowercase());
    let length: Option<u64> = response
        .header("content-length")
        .and_then(|l| l.parse().ok());
    if length.is_some_and(|l| l > MAX_FILE_BYTES) {
        return Err(fail(format!(
            "{file} is larger than {MAX_FILE_BYTES} bytes: refused"
        )));
    }
    if opts.progress {
        eprintln!("downloading {file}");
    }
    let io = |source| TaskError::Io {
        path: dest.to_path_buf(),
        source,
    };
    let mut out = std::fs::File::create(dest).map_err(io)?;
    let mut body = response.into_reader().take(MAX_FILE_BYTES + 1);
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        let n = body
            .read(&mut buf)
            .map_err(|e| fail(format!("downloading {file}: {e}")))?;
        if n == 0 {
            break;
        }
        total += n as u64;
        if total > MAX_FILE_BYTES {
            return Err(fail(format!(
                "{file} is larger than {MAX_FILE_BYTES} bytes: refused"
            )));
        }
        out.write_all(&buf[..n]).map_err(io)?;
    }
    out.sync_all().map_err(io)?;
    drop(out);
    let found = sha256_file(dest)?;
    if let Some(etag) = etag.filter(|e| e.len() == 64 && e.bytes().all(|b| b.is_ascii_hexdigit())) {
        if found != etag {
            let _ = std::fs::remove_file(dest);
            return Err(TaskError::HashMismatch {
                path: dest.to_path_buf(),
                expected: etag,
                found,
            });
        }
    }
    Ok(found)
}
