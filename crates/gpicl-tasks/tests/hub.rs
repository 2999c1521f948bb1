//! The Hugging Face Hub path end to end, against a local HTTP server that
//! serves the Hub's API and file-resolve routes with the headers `hf-hub`
//! relies on (`X-Repo-Commit`, `X-Linked-Etag`, `Content-Range`), and small
//! parquet shards written by the test. Nothing reaches the internet.

mod common;

use common::{example, shard};
use gpicl_tasks::cache::{verify_dataset, Manifest};
use gpicl_tasks::catalog::{DatasetInfo, HubSource, ImportFormat};
use gpicl_tasks::hub::{
    fetch, fetch_model, HubModelRef, HubOptions, ModelManifest, MODEL_MANIFEST,
};
use gpicl_tasks::idx::read_idx;
use gpicl_tasks::{DataConfig, DataRoots, ImageSet, Split, TaskError};
use gpicl_testing::scratch_dir;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

const REPO: &str = "test-org/tiny_digits";
const MODEL_REPO: &str = "test-org/tiny-learner";
const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// A 6×5 greyscale, 10-class dataset served from the test server.
const TINY: DatasetInfo = DatasetInfo {
    name: "tiny_digits",
    title: "test data",
    shape: (6, 5, 1),
    fixed_statistics: None,
    classes: 10,
    licence: "test",
    homepage: "",
    hub: Some(HubSource {
        repo: REPO,
        revision: "main",
        train_prefix: "digits/train-",
        test_prefix: "digits/test-",
        image_column: "image",
        label_column: "label",
    }),
    import: &[ImportFormat::Idx],
    idx_name_filter: None,
    transposed: false,
    label_offset: 0,
};

/// Example `i` of a shard starting at `first`: pixel `p` is `(i·7 + p) % 256`.
fn sha256(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// `(path, Authorization header)` of every request the server received.
type RequestLog = Arc<Mutex<Vec<(String, Option<String>)>>>;

/// What the server does.
#[derive(Default)]
struct Behaviour {
    /// Cut the next file download off half-way.
    truncate_next: AtomicBool,
    /// Announce a wrong sha256 for every file.
    wrong_etag: AtomicBool,
    /// Send this `ETag` (and `X-Linked-Etag`, `X-Repo-Commit`) instead.
    hostile_headers: Mutex<Option<String>>,
    /// List this commit instead of [`COMMIT`].
    hostile_commit: Mutex<Option<String>>,
    /// List this file too.
    hostile_file: Mutex<Option<String>>,
}

struct Server {
    endpoint: String,
    behaviour: Arc<Behaviour>,
    requests: RequestLog,
}

fn serve(files: BTreeMap<String, Vec<u8>>) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let behaviour = Arc::new(Behaviour::default());
    let requests: RequestLog = Arc::new(Mutex::new(Vec::new()));
    let (b, r) = (behaviour.clone(), requests.clone());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            let mut headers = BTreeMap::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                    break;
                }
                if let Some((k, v)) = line.split_once(':') {
                    headers.insert(k.trim().to_lowercase(), v.trim().to_string());
                }
            }
            let path = request_line
                .split_whitespace()
                .nth(1)
                .unwrap_or("")
                .to_string();
            r.lock()
                .unwrap()
                .push((path.clone(), headers.get("authorization").cloned()));
            respond(&mut stream, &path, &headers, &files, &b);
        }
    });
    Server {
        endpoint,
        behaviour,
        requests,
    }
}

fn respond(
    stream: &mut std::net::TcpStream,
    path: &str,
    headers: &BTreeMap<String, String>,
    files: &BTreeMap<String, Vec<u8>>,
    behaviour: &Behaviour,
) {
    // Datasets live under /datasets/, models (learners) at the root.
    let (api, resolve) = if path.starts_with(&format!("/api/models/{MODEL_REPO}"))
        || path.starts_with(&format!("/{MODEL_REPO}/"))
    {
        (
            format!("/api/models/{MODEL_REPO}/revision/main"),
            format!("/{MODEL_REPO}/resolve/main/"),
        )
    } else {
        (
            format!("/api/datasets/{REPO}/revision/main"),
            format!("/datasets/{REPO}/resolve/main/"),
        )
    };
    if path == api {
        let siblings: Vec<String> = files
            .keys()
            .map(|f| format!("{{\"rfilename\":\"{f}\"}}"))
            .chain(
                (!files.contains_key("README.md"))
                    .then(|| "{\"rfilename\":\"README.md\"}".to_string()),
            )
            .chain(
                behaviour
                    .hostile_file
                    .lock()
                    .unwrap()
                    .as_ref()
                    .map(|f| format!("{{\"rfilename\":\"{f}\"}}")),
            )
            .collect();
        let commit = behaviour
            .hostile_commit
            .lock()
            .unwrap()
            .clone()
            .unwrap_or_else(|| COMMIT.to_string());
        let body = format!(
            "{{\"id\":\"{REPO}\",\"sha\":\"{commit}\",\"siblings\":[{}]}}",
            siblings.join(",")
        );
        let _ = write!(
            stream,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        return;
    }
    let Some(file) = path.strip_prefix(&resolve).and_then(|f| files.get(f)) else {
        let _ = write!(
            stream,
            "HTTP/1.1 404 Not Found\r\nX-Error-Code: EntryNotFound\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        return;
    };
    let size = file.len();
    let (start, end) = headers
        .get("range")
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.split_once('-'))
        .map(|(a, b)| {
            let a: usize = a.parse().unwrap_or(0);
            let b: usize = b.parse().unwrap_or(size - 1);
            (a, b.min(size - 1))
        })
        .unwrap_or((0, size - 1));
    let body = &file[start..=end];
    let hostile = behaviour.hostile_headers.lock().unwrap().clone();
    let etag = if let Some(h) = &hostile {
        h.clone()
    } else if behaviour.wrong_etag.load(Ordering::SeqCst) {
        sha256(b"something else")
    } else {
        sha256(file)
    };
    let commit = hostile.unwrap_or_else(|| COMMIT.to_string());
    let _ = write!(
        stream,
        "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {start}-{end}/{size}\r\nAccept-Ranges: bytes\r\nETag: \"{etag}\"\r\nX-Linked-Etag: \"{etag}\"\r\nX-Repo-Commit: {commit}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let cut = body.len() > 1 && behaviour.truncate_next.swap(false, Ordering::SeqCst);
    let sent = if cut { &body[..body.len() / 2] } else { body };
    let _ = stream.write_all(sent);
    let _ = stream.flush();
}

/// Two train shards (examples 0..12 and 12..20) and one test shard (20..27).
fn tiny_files() -> BTreeMap<String, Vec<u8>> {
    BTreeMap::from([
        ("digits/train-00000-of-00002.parquet".into(), shard(0..12)),
        ("digits/train-00001-of-00002.parquet".into(), shard(12..20)),
        ("digits/test-00000-of-00001.parquet".into(), shard(20..27)),
        ("other/train-00000-of-00001.parquet".into(), shard(100..101)),
    ])
}

fn options(server: &Server, hub_home: &Path) -> HubOptions {
    HubOptions {
        endpoint: server.endpoint.clone(),
        hub_cache: hub_home.join("hub"),
        token: Some("hf_test_token".into()),
        offline: false,
        revision: None,
        progress: false,
    }
}

fn expected(range: std::ops::Range<usize>) -> (Vec<u8>, Vec<u8>) {
    let mut images = Vec::new();
    let mut labels = Vec::new();
    for i in range {
        let (px, label) = example(i);
        images.extend(px);
        labels.push(label);
    }
    (images, labels)
}

#[test]
fn fetching_from_the_hub_stores_every_shard_as_verified_idx() {
    let server = serve(tiny_files());
    let (hf_home, cache) = (scratch_dir("fetch-hf"), scratch_dir("fetch-cache"));
    let dir = fetch(&TINY, &options(&server, &hf_home), &cache).unwrap();

    let train_images = read_idx(&dir.join("train-images-idx3-ubyte.gz")).unwrap();
    let train_labels = read_idx(&dir.join("train-labels-idx1-ubyte.gz")).unwrap();
    assert_eq!(train_images.dims, vec![20, 6, 5]);
    assert_eq!((train_images.data, train_labels.data), expected(0..20));
    let test_images = read_idx(&dir.join("t10k-images-idx3-ubyte.gz")).unwrap();
    assert_eq!(test_images.dims, vec![7, 6, 5]);
    assert_eq!(test_images.data, expected(20..27).0);

    let manifest = verify_dataset(&dir).unwrap();
    assert_eq!(manifest.source, format!("hub:{REPO}@{COMMIT}"));
    assert_eq!(manifest.examples["train"], 20);
    let requests = server.requests.lock().unwrap();
    assert!(requests
        .iter()
        .all(|(_, auth)| auth.as_deref() == Some("Bearer hf_test_token")));
    assert!(
        requests.iter().all(|(p, _)| !p.contains("other/")),
        "only the dataset's shards are downloaded"
    );

    // Training code finds it by name in the cache.
    let roots = DataRoots::only(vec![cache.clone()]);
    let set = ImageSet::load(&roots, "tiny_digits", Split::Test, &DataConfig::default()).unwrap();
    assert_eq!(set.len(), 7);
}

#[test]
fn offline_mode_uses_the_hub_cache_and_says_when_it_is_empty() {
    let server = serve(tiny_files());
    let (hf_home, cache) = (scratch_dir("offline-hf"), scratch_dir("offline-cache"));
    let online = fetch(&TINY, &options(&server, &hf_home), &cache).unwrap();
    let served = server.requests.lock().unwrap().len();

    let mut offline = options(&server, &hf_home);
    offline.offline = true;
    let second_cache = scratch_dir("offline-cache-2");
    let again = fetch(&TINY, &offline, &second_cache).unwrap();
    assert_eq!(server.requests.lock().unwrap().len(), served, "no request");
    assert_eq!(
        Manifest::read(&online).unwrap().unwrap().sha256,
        Manifest::read(&again).unwrap().unwrap().sha256
    );

    let empty_home = scratch_dir("offline-empty");
    offline.hub_cache = empty_home.join("hub");
    let err = fetch(&TINY, &offline, &scratch_dir("offline-cache-3")).unwrap_err();
    assert!(err.to_string().contains("HF_HUB_OFFLINE"), "{err}");
}

#[test]
fn an_interrupted_download_leaves_no_dataset_and_the_retry_resumes() {
    let server = serve(tiny_files());
    let (hf_home, cache) = (scratch_dir("cut-hf"), scratch_dir("cut-cache"));
    server.behaviour.truncate_next.store(true, Ordering::SeqCst);
    let err = fetch(&TINY, &options(&server, &hf_home), &cache).unwrap_err();
    assert!(matches!(err, TaskError::Hub { .. }), "{err}");
    assert_eq!(
        std::fs::read_dir(&cache).unwrap().count(),
        0,
        "nothing half-written in the cache"
    );

    let dir = fetch(&TINY, &options(&server, &hf_home), &cache).unwrap();
    verify_dataset(&dir).unwrap();
    let train = read_idx(&dir.join("train-images-idx3-ubyte.gz")).unwrap();
    assert_eq!(train.data, expected(0..20).0);
    let resumed = server
        .requests
        .lock()
        .unwrap()
        .iter()
        .filter(|(p, _)| p.contains("train-00000"))
        .count();
    assert!(resumed >= 2, "the cut download and its retry");
}

#[test]
fn a_shard_that_does_not_match_its_sha256_is_refused_and_removed() {
    let server = serve(tiny_files());
    let (hf_home, cache) = (scratch_dir("etag-hf"), scratch_dir("etag-cache"));
    server.behaviour.wrong_etag.store(true, Ordering::SeqCst);
    match fetch(&TINY, &options(&server, &hf_home), &cache) {
        Err(TaskError::HashMismatch { path, .. }) => {
            assert!(path.to_string_lossy().contains("train-00000"));
            assert!(!path.exists(), "the bad blob is removed");
        }
        other => panic!("expected a hash mismatch, got {other:?}"),
    }
    assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 0);
}

#[test]
fn a_corrupted_cache_entry_is_refused_with_its_path() {
    let server = serve(tiny_files());
    let (hf_home, cache) = (scratch_dir("corrupt-hf"), scratch_dir("corrupt-cache"));
    let dir = fetch(&TINY, &options(&server, &hf_home), &cache).unwrap();
    let file = dir.join("t10k-images-idx3-ubyte.gz");
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[20] ^= 0x55;
    std::fs::write(&file, bytes).unwrap();
    let roots = DataRoots::only(vec![cache.clone()]);
    match ImageSet::load(&roots, "tiny_digits", Split::Test, &DataConfig::default()) {
        Err(TaskError::HashMismatch { path, .. }) => assert_eq!(path, file),
        other => panic!("expected a hash mismatch, got {other:?}"),
    }
    assert!(verify_dataset(&dir).is_err());
}

#[test]
fn a_repository_without_the_datasets_shards_is_an_error() {
    let server = serve(BTreeMap::from([(
        "unrelated/data.parquet".to_string(),
        shard(0..2),
    )]));
    let (hf_home, cache) = (scratch_dir("empty-hf"), scratch_dir("empty-cache"));
    let err = fetch(&TINY, &options(&server, &hf_home), &cache).unwrap_err();
    assert!(err.to_string().contains("digits/train-"), "{err}");
}

#[test]
fn hub_options_follow_the_hub_environment_variables() {
    // The only test in this binary that touches the environment.
    let home = scratch_dir("env");
    std::env::set_var("HF_HOME", &home);
    std::env::set_var("HF_ENDPOINT", "http://mirror.invalid");
    std::env::set_var("HF_TOKEN", "hf_from_env");
    std::env::set_var("HF_HUB_OFFLINE", "1");
    let opts = HubOptions::from_env();
    assert_eq!(opts.endpoint, "http://mirror.invalid");
    assert_eq!(opts.hub_cache, home.join("hub"));
    assert_eq!(opts.token.as_deref(), Some("hf_from_env"));
    assert!(opts.offline);

    std::env::remove_var("HF_TOKEN");
    std::fs::write(home.join("token"), "hf_from_file\n").unwrap();
    std::env::set_var("HF_HUB_OFFLINE", "0");
    let opts = HubOptions::from_env();
    assert_eq!(opts.token.as_deref(), Some("hf_from_file"));
    assert!(!opts.offline);
    for var in ["HF_HOME", "HF_ENDPOINT", "HF_HUB_OFFLINE"] {
        std::env::remove_var(var);
    }
}

/// A learner's repository as `cargo xtask export` writes it.
fn learner_files() -> BTreeMap<String, Vec<u8>> {
    let dir = scratch_dir("learner-src");
    let mut files = BTreeMap::from([
        ("config.toml".to_string(), b"seed = 0\n".to_vec()),
        ("README.md".to_string(), b"# tiny learner\n".to_vec()),
        (
            "checkpoints/step-000000010.safetensors".to_string(),
            vec![7u8; 300],
        ),
    ]);
    for (name, bytes) in &files {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
    let manifest = ModelManifest::of_dir(&dir).unwrap();
    manifest.write(&dir).unwrap();
    files.insert(
        MODEL_MANIFEST.into(),
        std::fs::read(dir.join(MODEL_MANIFEST)).unwrap(),
    );
    files
}

#[test]
fn a_learner_is_fetched_from_the_hub_verified_and_then_found_offline_in_the_cache() {
    let files = learner_files();
    let server = serve(files.clone());
    let hf_home = scratch_dir("learner-hf");
    let model = HubModelRef::parse(&format!("hf://{MODEL_REPO}"))
        .unwrap()
        .unwrap();
    let dir = fetch_model(&model, &options(&server, &hf_home)).unwrap();
    for (name, bytes) in &files {
        assert_eq!(&std::fs::read(dir.join(name)).unwrap(), bytes, "{name}");
    }
    let served = server.requests.lock().unwrap().len();

    let mut offline = options(&server, &hf_home);
    offline.offline = true;
    assert_eq!(fetch_model(&model, &offline).unwrap(), dir);
    assert_eq!(
        server.requests.lock().unwrap().len(),
        served,
        "offline makes no request"
    );

    // A file changed in the cache no longer matches the manifest.
    let checkpoint = dir.join("checkpoints/step-000000010.safetensors");
    let blob = std::fs::canonicalize(&checkpoint).unwrap();
    std::fs::remove_file(&blob).unwrap();
    std::fs::write(&blob, [0u8; 300]).unwrap();
    let err = fetch_model(&model, &offline).unwrap_err();
    assert!(matches!(err, TaskError::HashMismatch { .. }), "{err}");

    let empty = HubOptions {
        hub_cache: scratch_dir("learner-empty").join("hub"),
        ..offline
    };
    let err = fetch_model(&model, &empty).unwrap_err().to_string();
    assert!(
        err.contains("HF_HUB_OFFLINE") && err.contains(MODEL_REPO),
        "{err}"
    );
}

#[test]
fn learner_references_parse_with_an_optional_revision_and_local_paths_are_not_references() {
    let pinned = HubModelRef::parse("hf://owner/name@v1.0").unwrap().unwrap();
    assert_eq!(
        (pinned.repo.as_str(), pinned.revision.as_str()),
        ("owner/name", "v1.0")
    );
    let main = HubModelRef::parse("hf://owner/name").unwrap().unwrap();
    assert_eq!(main.revision, "main");
    assert!(HubModelRef::parse("models/gpicl-quickstart-7px").is_none());
    for bad in [
        "hf://name",
        "hf://owner/",
        "hf://owner/name@",
        "hf://a/b/c",
        "hf://owner/repo@../../../../v",
        "hf://../repo",
        "hf://owner/..",
        "hf://owner/repo@a/b",
    ] {
        assert!(HubModelRef::parse(bad).unwrap().is_err(), "{bad}");
    }
}

/// Everything under `root` except `home` (where the Hub cache may write).
fn written_outside(root: &Path) -> Vec<String> {
    std::fs::read_dir(root)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n != "home")
        .collect()
}

#[test]
fn hostile_hub_headers_never_become_paths_and_nothing_is_written_outside_the_hub_cache() {
    let files = learner_files();
    let server = serve(files.clone());
    *server.behaviour.hostile_headers.lock().unwrap() = Some("../../../../../escaped".into());
    let root = scratch_dir("hostile-headers");
    let hf_home = root.join("home");
    let model = HubModelRef::parse(&format!("hf://{MODEL_REPO}"))
        .unwrap()
        .unwrap();
    // The headers are not sha256 ETags, so they are ignored; the manifest
    // still checks every file.
    let dir = fetch_model(&model, &options(&server, &hf_home)).unwrap();
    assert!(dir.starts_with(&hf_home), "{}", dir.display());
    assert_eq!(written_outside(&root), Vec::<String>::new());
    assert!(!root.parent().unwrap().join("escaped").exists());
}

#[test]
fn a_listed_commit_or_file_name_that_leaves_the_cache_is_refused_before_anything_is_written() {
    let root = scratch_dir("hostile-listing");
    let hf_home = root.join("home");
    let model = HubModelRef::parse(&format!("hf://{MODEL_REPO}"))
        .unwrap()
        .unwrap();

    let server = serve(learner_files());
    *server.behaviour.hostile_commit.lock().unwrap() = Some("../../../escaped-commit".into());
    let err = fetch_model(&model, &options(&server, &hf_home)).unwrap_err();
    assert!(matches!(err, TaskError::UnsafeName { .. }), "{err}");
    assert!(err.to_string().contains("Hub commit"), "{err}");

    let server = serve(learner_files());
    *server.behaviour.hostile_file.lock().unwrap() = Some("../../../escaped-file".into());
    let err = fetch_model(&model, &options(&server, &hf_home)).unwrap_err();
    assert!(err.to_string().contains("Hub file"), "{err}");

    let server = serve(tiny_files());
    *server.behaviour.hostile_file.lock().unwrap() =
        Some("digits/train-/../../../../escaped.parquet".into());
    let cache = root.join("home/cache");
    let err = fetch(&TINY, &options(&server, &hf_home), &cache).unwrap_err();
    assert!(err.to_string().contains("Hub file"), "{err}");
    assert_eq!(written_outside(&root), Vec::<String>::new());
}

#[test]
fn a_learner_whose_files_do_not_match_its_manifest_never_reaches_the_hub_cache() {
    let mut files = learner_files();
    files.insert("config.toml".into(), b"seed = 666\n".to_vec());
    let server = serve(files);
    let hf_home = scratch_dir("learner-tampered");
    let model = HubModelRef::parse(&format!("hf://{MODEL_REPO}"))
        .unwrap()
        .unwrap();
    let err = fetch_model(&model, &options(&server, &hf_home)).unwrap_err();
    assert!(matches!(err, TaskError::HashMismatch { .. }), "{err}");
    let repo_dir = hf_home.join("hub/models--test-org--tiny-learner");
    assert!(
        !repo_dir.join("snapshots").exists(),
        "nothing moved into the cache"
    );
    assert!(!repo_dir.join("blobs").exists());
    let leftovers: Vec<_> = std::fs::read_dir(&repo_dir)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        leftovers.is_empty(),
        "temporary folder removed: {leftovers:?}"
    );
}
