//! `cargo xtask data`: list, fetch, import and verify datasets.

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use gpicl::tasks::cache::{cached_datasets, default_cache_dir, verify_dataset, Manifest};
use gpicl::tasks::catalog::{self, DatasetInfo, ImportFormat};
use gpicl::tasks::hub::{self, HubOptions};
use gpicl::tasks::{
    import, import_user, ChannelPolicy, DataRoots, Split, NUM_CLASSES, RANDOM_DATASET,
};
use serde::Serialize;
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct DataArgs {
    #[command(subcommand)]
    command: DataCommand,
    /// gpicl's dataset cache [default: GPICL_CACHE_DIR, else
    /// ~/.cache/gpicl/datasets].
    #[arg(long, global = true)]
    cache_dir: Option<PathBuf>,
}

#[derive(Subcommand)]
enum DataCommand {
    /// Every known dataset: source, splits, shape, classes, licence, and
    /// where it is present locally.
    List {
        /// Also search this folder (as --data-dir does for train).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Download datasets from the Hugging Face Hub into the cache
    /// (honours HF_ENDPOINT, HF_HOME, HF_TOKEN, HF_HUB_OFFLINE).
    Fetch {
        /// Dataset names (see `data list`).
        #[arg(required = true)]
        names: Vec<String>,
        /// Hub revision (branch or commit) instead of the pinned one.
        #[arg(long)]
        revision: Option<String>,
        /// Fetch again even if the cache already holds a verified copy.
        #[arg(long)]
        force: bool,
    },
    /// Import into the cache: a known dataset from a local copy in its
    /// original format (MNIST-style IDX files, CIFAR-10 binary batches), or
    /// a dataset of your own under a new name: an image folder (one
    /// sub-folder per class of PNG/JPEG files, optionally under train/ and
    /// test/) or a table (.csv with a header row, or .parquet).
    Import {
        /// Dataset name: a known one (see `data list`) or a new one.
        name: String,
        /// The folder (a known dataset's files, or an image folder) or table file.
        path: PathBuf,
        /// Tables: the label column.
        #[arg(long, default_value = "label")]
        label: String,
        /// Tables: a test split with the same columns.
        #[arg(long, value_name = "FILE")]
        test: Option<PathBuf>,
        /// Image folders: resize every image to this square side (needed when sizes differ).
        #[arg(long)]
        image_size: Option<usize>,
        /// Image folders: store images as gray (default) or rgb.
        #[arg(long, value_enum, default_value = "gray")]
        channels: Channels,
    },
    /// Re-hash cached datasets against their manifests.
    Verify {
        /// Datasets to check [default: every cached dataset].
        names: Vec<String>,
    },
}

pub fn run(args: DataArgs) -> Result<()> {
    let cache = args.cache_dir.clone().unwrap_or_else(default_cache_dir);
    match args.command {
        DataCommand::List { data_dir, json } => list(&cache, data_dir.as_deref(), json),
        DataCommand::Fetch {
            names,
            revision,
            force,
        } => {
            let mut opts = HubOptions::from_env();
            opts.revision = revision;
            for name in names {
                fetch(&cache, &name, &opts, force)?;
            }
            Ok(())
        }
        DataCommand::Import {
            name,
            path,
            label,
            test,
            image_size,
            channels,
        } => {
            let installed = if let Some(info) = catalog::lookup(&name) {
                import::import_dir(info, &path, &cache)
            } else if path.is_dir() {
                import_user::import_image_folder(
                    &path,
                    &name,
                    &cache,
                    image_size,
                    channels.policy(),
                )
            } else {
                import_user::import_table(&path, test.as_deref(), &label, &name, &cache)
            }
            .with_context(|| format!("importing `{name}` from {}", path.display()))?;
            report_installed(&installed)
        }
        DataCommand::Verify { names } => verify(&cache, names),
    }
}

/// `--channels`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Channels {
    Gray,
    Rgb,
}

impl Channels {
    pub fn policy(self) -> ChannelPolicy {
        match self {
            Channels::Gray => ChannelPolicy::Gray,
            Channels::Rgb => ChannelPolicy::Rgb,
        }
    }
}

fn known(name: &str) -> Result<&'static DatasetInfo> {
    catalog::lookup(name).with_context(|| {
        format!(
            "unknown dataset `{name}`; known: {}",
            catalog::known_names()
        )
    })
}

fn fetch(cache: &Path, name: &str, opts: &HubOptions, force: bool) -> Result<()> {
    let info = known(name)?;
    let existing = cache.join(name);
    if !force && Manifest::read(&existing).ok().flatten().is_some() {
        match verify_dataset(&existing) {
            Ok(m) => {
                outln!(
                    "{name}: already cached at {} (verified, from {}); --force fetches again",
                    existing.display(),
                    m.source
                );
                return Ok(());
            }
            Err(e) => errln!("{name}: the cached copy is damaged ({e}); fetching again"),
        }
    }
    if let Some(src) = info.hub {
        let revision = opts.revision.as_deref().unwrap_or(src.revision);
        outln!(
            "{name}: fetching {}@{revision} from {}{}",
            src.repo,
            opts.endpoint,
            if opts.offline {
                " (offline: Hub cache only)"
            } else {
                ""
            }
        );
    }
    let path = hub::fetch(info, opts, cache).with_context(|| format!("fetching `{name}`"))?;
    report_installed(&path)
}

fn report_installed(path: &Path) -> Result<()> {
    let manifest = Manifest::read(path)?.context("the new dataset has no manifest")?;
    let splits: Vec<String> = manifest
        .examples
        .iter()
        .map(|(split, n)| format!("{split} {n}"))
        .collect();
    outln!(
        "{}: {} ({}; source {})",
        manifest.name,
        path.display(),
        splits.join(", "),
        manifest.source
    );
    Ok(())
}

fn verify(cache: &Path, names: Vec<String>) -> Result<()> {
    let names = if names.is_empty() {
        cached_datasets(cache)
    } else {
        names
    };
    if names.is_empty() {
        outln!("no dataset in {}", cache.display());
        return Ok(());
    }
    let mut failed = 0;
    for name in &names {
        match verify_dataset(&cache.join(name)) {
            Ok(m) => outln!("ok      {name}: {} files match", m.sha256.len()),
            Err(e) => {
                failed += 1;
                outln!("FAILED  {name}: {e}");
            }
        }
    }
    if failed > 0 {
        bail!("{failed} of {} datasets failed verification", names.len());
    }
    Ok(())
}

#[derive(Serialize)]
struct Listing {
    name: String,
    title: String,
    classes: Option<usize>,
    shape: Option<[usize; 3]>,
    licence: Option<String>,
    hub: Option<String>,
    import_formats: Vec<&'static str>,
    /// Where it was found, if anywhere.
    location: Option<PathBuf>,
    /// Splits present at that location.
    splits: Vec<&'static str>,
    /// Examples per split, when a manifest records them.
    examples: Option<std::collections::BTreeMap<String, usize>>,
    /// Generated from the seed (the `random` dataset), never on disk.
    synthetic: bool,
}

fn list(cache: &Path, data_dir: Option<&Path>, json: bool) -> Result<()> {
    let rows = listings(cache, data_dir);
    if json {
        outln!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    print_table(&rows);
    Ok(())
}

/// Every dataset of the catalogue (found or not), the synthetic `random`
/// one, and local datasets found in the data roots.
fn listings(cache: &Path, data_dir: Option<&Path>) -> Vec<Listing> {
    // The cache given here wins over the default one that DataRoots adds.
    let mut roots = data_dir
        .map(Path::to_path_buf)
        .into_iter()
        .collect::<Vec<_>>();
    roots.push(cache.to_path_buf());
    roots.extend(DataRoots::new(None).roots().iter().cloned());
    let roots = DataRoots::only(roots);

    let mut rows: Vec<Listing> = catalog::DATASETS
        .iter()
        .map(|info| listing(info.name, Some(info), &roots))
        .collect();
    let synthetic = [
        (
            RANDOM_DATASET,
            "synthetic: per task, 10 images uniform in [0, 1], one per label",
            Some([28, 28, 1]),
        ),
        (
            gpicl::tasks::tabular::TABULAR_DATASET,
            "synthetic: per task, a fresh table (2–100 features, 2–10 classes; labels from a random network, tree or mixture)",
            None,
        ),
    ];
    rows.extend(synthetic.into_iter().map(|(name, title, shape)| Listing {
        name: name.to_string(),
        title: title.into(),
        classes: Some(NUM_CLASSES),
        shape,
        licence: None,
        hub: None,
        import_formats: Vec::new(),
        location: None,
        splits: Vec::new(),
        examples: None,
        synthetic: true,
    }));
    let mut names: Vec<String> = roots
        .roots()
        .iter()
        .flat_map(|r| std::fs::read_dir(r).into_iter().flatten().flatten())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| !n.starts_with('.') && catalog::lookup(n).is_none())
        .collect();
    names.sort();
    names.dedup();
    for name in names {
        let row = listing(&name, None, &roots);
        if row.location.is_some() {
            rows.push(row);
        }
    }
    rows
}
fn print_table(rows: &[Listing]) {
    outln!(
        "{:<16} {:>7} {:<11} {:<24} {:<44} location",
        "name",
        "classes",
        "shape",
        "splits",
        "hub source"
    );
    for r in rows {
        let shape = r
            .shape
            .map(|[h, w, c]| format!("{h}×{w}×{c}"))
            .unwrap_or_else(|| "?".into());
        let splits = match &r.examples {
            Some(ex) => ex
                .iter()
                .map(|(s, n)| format!("{s}:{n}"))
                .collect::<Vec<_>>()
                .join(" "),
            None if r.splits.is_empty() => "-".into(),
            None => r.splits.join(" "),
        };
        outln!(
            "{:<16} {:>7} {:<11} {:<24} {:<44} {}",
            r.name,
            r.classes.map_or("?".into(), |c| c.to_string()),
            shape,
            splits,
            match (&r.hub, r.synthetic) {
                (_, true) => "- (synthetic)".to_string(),
                (Some(hub), false) => short_revision(hub),
                (None, false) => "- (import only)".to_string(),
            },
            match (&r.location, r.synthetic) {
                (_, true) => "built in: generated from the seed at any image size".into(),
                (Some(p), false) => p.display().to_string(),
                (None, false) => "not present".into(),
            }
        );
    }
    outln!("\nlicences:");
    for r in rows.iter().filter(|r| r.licence.is_some()) {
        outln!("  {:<16} {}", r.name, r.licence.as_deref().unwrap_or(""));
    }
}

/// `repo@<first 10 characters of the revision>`, for the table.
fn short_revision(hub: &str) -> String {
    match hub.split_once('@') {
        Some((repo, rev)) => format!("{repo}@{}", &rev[..rev.len().min(10)]),
        None => hub.to_string(),
    }
}

fn listing(name: &str, info: Option<&DatasetInfo>, roots: &DataRoots) -> Listing {
    let location = roots.find(name);
    let splits = location
        .as_ref()
        .map(|_| {
            [Split::Train, Split::Test]
                .into_iter()
                .filter(|&s| roots.has_split(name, s))
                .map(|s| s.file_prefix())
                .collect()
        })
        .unwrap_or_default();
    let examples = location
        .as_ref()
        .and_then(|dir| Manifest::read(dir).ok().flatten())
        .map(|m| m.examples);
    Listing {
        name: name.to_string(),
        title: info.map_or("local dataset".into(), |i| i.title.to_string()),
        classes: info.map(|i| i.classes),
        shape: info.map(|i| [i.shape.0, i.shape.1, i.shape.2]),
        licence: info.map(|i| i.licence.to_string()),
        hub: info
            .and_then(|i| i.hub)
            .map(|h| format!("{}@{}", h.repo, h.revision)),
        import_formats: info
            .map(|i| {
                i.import
                    .iter()
                    .map(|f| match f {
                        ImportFormat::Idx => "idx",
                        ImportFormat::CifarBinary => "cifar-binary",
                    })
                    .collect()
            })
            .unwrap_or_default(),
        location,
        splits,
        examples,
        synthetic: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listing_shows_the_synthetic_random_dataset_as_built_in() {
        let empty = std::env::temp_dir().join(format!("gpicl-list-{}", std::process::id()));
        let rows = listings(&empty, None);
        let random: Vec<&Listing> = rows.iter().filter(|r| r.name == RANDOM_DATASET).collect();
        assert_eq!(random.len(), 1);
        assert!(random[0].synthetic && random[0].location.is_none());
        assert_eq!(random[0].classes, Some(NUM_CLASSES));
        assert!(rows.iter().any(|r| r.name == "mnist" && !r.synthetic));
    }
}
