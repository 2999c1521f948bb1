//! Image datasets: finding them by name, loading IDX splits and turning
//! them into flat feature vectors of one shared size `N_x`.

use crate::config::{ChannelPolicy, DataConfig, ResizeMethod};
use crate::error::{Result, TaskError};
use crate::idx::read_idx;
pub use crate::spec::{Split, RANDOM_DATASET};
use std::path::{Path, PathBuf};

/// A stored 0–255 pixel value as the `[0, 1]` intensity every dataset and
/// `predict` read.
pub fn unit_pixel(v: f32) -> f32 {
    v / 255.0
}

/// The folder of small datasets shipped with the repository: `data/` of
/// the checkout the binary was built from, or, where that is gone (a
/// binary copied to another machine, as for the GPU), a `data/` folder
/// beside the binary. Copy the repository's `data/` next to a binary you
/// move.
pub fn embedded_data_dir() -> PathBuf {
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data");
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("data")));
    choose_embedded_dir(built, beside)
}

/// The first of `built` and `beside` that holds the embedded MNIST subset
/// (`built` when neither does, so errors name the expected place).
fn choose_embedded_dir(built: PathBuf, beside: Option<PathBuf>) -> PathBuf {
    let holds_data = |dir: &Path| dir.join("mnist").is_dir();
    if holds_data(&built) {
        return built;
    }
    match beside {
        Some(dir) if holds_data(&dir) => dir,
        _ => built,
    }
}

/// Where datasets are looked for, in order: an explicit `--data-dir`,
/// `GPICL_DATA_DIR`, gpicl's cache (`GPICL_CACHE_DIR`, see
/// [`crate::cache::default_cache_dir`]), then the embedded `data/`.
#[derive(Clone, Debug)]
pub struct DataRoots {
    roots: Vec<PathBuf>,
}

impl DataRoots {
    /// Search roots for an optional explicit directory.
    pub fn new(explicit: Option<&Path>) -> Self {
        let mut roots = Vec::new();
        if let Some(dir) = explicit {
            roots.push(dir.to_path_buf());
        }
        if let Some(env) = std::env::var_os("GPICL_DATA_DIR") {
            roots.push(PathBuf::from(env));
        }
        roots.push(crate::cache::default_cache_dir());
        roots.push(embedded_data_dir());
        Self { roots }
    }

    /// Like [`DataRoots::new`], but an explicit `--data-dir` that is not a
    /// folder is an error naming it (instead of being searched in vain).
    pub fn with_data_dir(explicit: Option<&Path>) -> Result<Self> {
        if let Some(dir) = explicit {
            if !dir.is_dir() {
                return Err(TaskError::Config {
                    option: "--data-dir".into(),
                    reason: format!(
                        "{} is not a folder: expected a folder holding `NAME/{{train,t10k}}-{{images-idx3,labels-idx1}}-ubyte[.gz]`",
                        dir.display()
                    ),
                });
            }
        }
        Ok(Self::new(explicit))
    }

    /// Only these roots, nothing from the environment (for tests).
    pub fn only(roots: Vec<PathBuf>) -> Self {
        Self { roots }
    }

    fn files(dir: &Path, split: Split) -> Option<(PathBuf, PathBuf)> {
        let pick = |stem: String| {
            let gz = dir.join(format!("{stem}.gz"));
            let raw = dir.join(&stem);
            if gz.is_file() {
                Some(gz)
            } else if raw.is_file() {
                Some(raw)
            } else {
                None
            }
        };
        let p = split.file_prefix();
        Some((
            pick(format!("{p}-images-idx3-ubyte"))?,
            pick(format!("{p}-labels-idx1-ubyte"))?,
        ))
    }

    /// The search roots, in order.
    pub fn roots(&self) -> &[PathBuf] {
        &self.roots
    }

    /// Whether some root has both files of `name`'s `split` (no hashing).
    pub fn has_split(&self, name: &str, split: Split) -> bool {
        crate::names::validate_path_name("dataset name", name).is_ok()
            && self
                .roots
                .iter()
                .any(|r| Self::files(&r.join(name), split).is_some())
    }

    /// The folder of `name` in the first root that has it, with any split.
    pub fn find(&self, name: &str) -> Option<PathBuf> {
        crate::names::validate_path_name("dataset name", name).ok()?;
        self.roots.iter().map(|r| r.join(name)).find(|dir| {
            Self::files(dir, Split::Train).is_some() || Self::files(dir, Split::Test).is_some()
        })
    }

    /// The image and label files of `name`'s `split`, from the first root
    /// that has both. Files of a dataset with a manifest (gpicl's cache)
    /// are checked against their recorded sha256.
    pub fn locate(&self, name: &str, split: Split) -> Result<(PathBuf, PathBuf)> {
        crate::names::validate_path_name("dataset name", name)?;
        for root in &self.roots {
            let dir = root.join(name);
            if let Some((images, labels)) = Self::files(&dir, split) {
                crate::cache::verify_file(&dir, &images)?;
                crate::cache::verify_file(&dir, &labels)?;
                return Ok((images, labels));
            }
        }
        let hint = match crate::catalog::lookup(name) {
            _ if self.find(name).is_some() => match split {
                Split::Test => format!(
                    "`{name}` has only a train split here; evaluate on it with `--set eval.split=train` (for datasets the run was not meta-trained on)"
                ),
                Split::Train => format!(
                    "`{name}` has only a test split here: it can be evaluated on, not meta-trained on"
                ),
            },
            Some(info) if info.hub.is_some() => format!(
                "Fetch it with `cargo xtask data fetch {name}`, import a local copy with `cargo xtask data import {name} DIR`, or pass --data-dir DIR (or GPICL_DATA_DIR) holding `{name}/{{train,t10k}}-{{images-idx3,labels-idx1}}-ubyte[.gz]`"
            ),
            Some(_) => format!(
                "Import a local copy with `cargo xtask data import {name} DIR`, or pass --data-dir DIR (or GPICL_DATA_DIR) holding `{name}/{{train,t10k}}-{{images-idx3,labels-idx1}}-ubyte[.gz]`"
            ),
            None => format!(
                "`{name}` is not a known dataset (known: {}, and `random`); a folder `{name}/` with IDX files under --data-dir also works",
                crate::catalog::known_names()
            ),
        };
        Err(TaskError::MissingDataset {
            name: name.to_string(),
            split: split.file_prefix().to_string(),
            searched: self
                .roots
                .iter()
                .map(|r| r.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            hint,
        })
    }

    /// Names of every dataset that has `split` under some root.
    pub fn available(&self, split: Split) -> Vec<String> {
        let mut names = Vec::new();
        for root in &self.roots {
            let Ok(entries) = std::fs::read_dir(root) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().to_string();
                // Hidden folders are the cache's unfinished or replaced copies.
                if name.starts_with('.') {
                    continue;
                }
                if Self::files(&entry.path(), split).is_some() && !names.contains(&name) {
                    names.push(name);
                }
            }
        }
        names.sort();
        names
    }
}

/// A preprocessed image dataset: flat features in `[0, 1]` and labels.
#[derive(Clone, Debug)]
pub struct ImageSet {
    /// Dataset name, e.g. `mnist`.
    pub name: String,
    /// `[n, n_x]` row-major features in `[0, 1]`.
    pub x: Vec<f32>,
    /// One label per example, `< classes`.
    pub labels: Vec<u8>,
    /// Features per example.
    pub n_x: usize,
    /// Number of classes: at least 10; more means tasks draw 10-class
    /// subsets ([`crate::pool`]).
    pub classes: usize,
    /// The image file it was read from (for messages).
    pub source: PathBuf,
}

impl ImageSet {
    /// Number of examples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the set holds no example.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Features of example `i`.
    pub fn example(&self, i: usize) -> &[f32] {
        &self.x[i * self.n_x..(i + 1) * self.n_x]
    }

    /// Loads `name`'s `split` and preprocesses it as `cfg` says.
    pub fn load(roots: &DataRoots, name: &str, split: Split, cfg: &DataConfig) -> Result<Self> {
        let (images_path, labels_path) = roots.locate(name, split)?;
        let images = read_idx(&images_path)?;
        let labels = read_idx(&labels_path)?;
        let corrupt = |path: &Path, reason: String| TaskError::Corrupt {
            path: path.to_path_buf(),
            reason,
        };
        if labels.dims.len() != 1 {
            return Err(corrupt(
                &labels_path,
                format!("labels must be rank 1, found dimensions {:?}", labels.dims),
            ));
        }
        let (n, h, w, c) = match images.dims[..] {
            [n, h, w] => (n, h, w, 1),
            [n, h, w, c] if c == 1 || c == 3 => (n, h, w, c),
            _ => {
                return Err(corrupt(
                    &images_path,
                    format!(
                        "images must be N×H×W or N×H×W×C with C of 1 or 3, found dimensions {:?}",
                        images.dims
                    ),
                ))
            }
        };
        if h == 0 || w == 0 {
            return Err(corrupt(
                &images_path,
                format!("images of {h}×{w} pixels: expected a positive height and width"),
            ));
        }
        if labels.dims[0] != n {
            return Err(corrupt(
                &labels_path,
                format!(
                    "{} labels for {n} images in {}",
                    labels.dims[0],
                    images_path.display()
                ),
            ));
        }
        if n == 0 {
            return Err(corrupt(&images_path, "holds no image".into()));
        }
        let known = crate::catalog::lookup(name);
        if let Some(info) = known {
            if (h, w, c) != info.shape {
                let (eh, ew, ec) = info.shape;
                return Err(corrupt(
                    &images_path,
                    format!(
                        "images are {h}×{w}×{c} (height × width × channels), but `{name}` is {eh}×{ew}×{ec}: is this another dataset's file?"
                    ),
                ));
            }
        }
        // Every dataset read checks its labels against its class count: the
        // catalogue's, else the lines of its `classes.txt`.
        let class_count = match known {
            Some(info) => Some(info.classes),
            None => class_file_count(&images_path)?,
        };
        if let Some(class_count) = class_count {
            if let Some((index, label)) = labels
                .data
                .iter()
                .enumerate()
                .find(|(_, &label)| label as usize >= class_count)
            {
                return Err(corrupt(
                    &labels_path,
                    format!(
                        "label {label} at index {index} is outside `{name}`'s {class_count} classes (0…{})",
                        class_count - 1
                    ),
                ));
            }
        }
        let mut seen = [false; 256];
        for &l in &labels.data {
            seen[l as usize] = true;
        }
        let distinct = seen.iter().filter(|&&s| s).count();
        if split == Split::Train && n > 1 && distinct < 2 {
            return Err(corrupt(
                &labels_path,
                format!(
                    "every one of its {n} labels is {}: classification needs at least two classes",
                    labels.data[0]
                ),
            ));
        }
        let max = labels.data.iter().copied().max().unwrap_or(0) as usize;
        if class_count.is_none() && max >= crate::NUM_CLASSES && distinct * 2 < max + 1 {
            return Err(corrupt(
                &labels_path,
                format!(
                    "labels run up to {max}, but only {distinct} distinct values occur: is this a labels file? A dataset with more than {} classes lists them in classes.txt beside its files (`cargo xtask data import` writes it)",
                    crate::NUM_CLASSES
                ),
            ));
        }
        // Datasets with more classes become 10-way tasks in `crate::pool`.
        let classes =
            (labels.data.iter().copied().max().unwrap_or(0) as usize + 1).max(crate::NUM_CLASSES);
        let pre = Preprocessor::new(h, w, c, cfg);
        let mut x = Vec::with_capacity(n * pre.n_x());
        for img in images.data.chunks_exact(h * w * c) {
            pre.apply(img, &mut x);
        }
        Ok(Self {
            name: name.to_string(),
            n_x: pre.n_x(),
            x,
            labels: labels.data,
            classes,
            source: images_path,
        })
    }
}

/// The number of classes `classes.txt` beside `file` lists (its non-empty
/// lines), or `None` when there is none.
fn class_file_count(file: &Path) -> Result<Option<usize>> {
    let Some(path) = file.parent().map(|d| d.join("classes.txt")) else {
        return Ok(None);
    };
    let Ok(meta) = std::fs::metadata(&path) else {
        return Ok(None);
    };
    if !meta.is_file() || meta.len() > 1 << 20 {
        return Err(TaskError::Corrupt {
            path,
            reason: "is not a regular file of at most 1 MiB".into(),
        });
    }
    let text = std::fs::read_to_string(&path).map_err(|source| TaskError::Io {
        path: path.clone(),
        source,
    })?;
    let count = text.lines().filter(|l| !l.trim().is_empty()).count();
    Ok((count >= 2).then_some(count))
}

/// Number of features per example after preprocessing the configured
/// dataset: `data.image_size`² (or the dataset's native size from the
/// catalogue, [`crate::catalog::native_size`], when it is 0) times the
/// channels. A dataset without a catalogue entry needs a non-zero
/// `data.image_size` here; loading it ([`ImageSet::load`]) reads its size
/// from its files instead.
pub fn feature_count(cfg: &DataConfig) -> Result<usize> {
    let (h, w) = if cfg.image_size == 0 {
        crate::catalog::native_size(&crate::spec::dataset_names(&cfg.dataset)?)?
    } else {
        (cfg.image_size, cfg.image_size)
    };
    Ok(h * w * cfg.channels.count())
}

/// Resizes, converts channels, flattens and scales one image.
struct Preprocessor {
    channels_in: usize,
    policy: ChannelPolicy,
    rows: Vec<Vec<(usize, f32)>>,
    cols: Vec<Vec<(usize, f32)>>,
    in_w: usize,
}

impl Preprocessor {
    fn new(h: usize, w: usize, c: usize, cfg: &DataConfig) -> Self {
        let (oh, ow) = if cfg.image_size == 0 {
            (h, w)
        } else {
            (cfg.image_size, cfg.image_size)
        };
        Self {
            channels_in: c,
            policy: cfg.channels,
            rows: resize_weights(h, oh, cfg.resize),
            cols: resize_weights(w, ow, cfg.resize),
            in_w: w,
        }
    }

    fn n_x(&self) -> usize {
        self.rows.len() * self.cols.len() * self.policy.count()
    }

    fn apply(&self, img: &[u8], out: &mut Vec<f32>) {
        let c = self.channels_in;
        for row in &self.rows {
            for col in &self.cols {
                let mut px = [0f32; 3];
                for &(i, wi) in row {
                    for &(j, wj) in col {
                        let base = (i * self.in_w + j) * c;
                        for (ch, p) in px.iter_mut().enumerate().take(c) {
                            *p += wi * wj * img[base + ch] as f32;
                        }
                    }
                }
                let px = px.map(unit_pixel);
                match (self.policy, c) {
                    (ChannelPolicy::Gray, 1) => out.push(px[0]),
                    (ChannelPolicy::Gray, _) => {
                        out.push(0.299 * px[0] + 0.587 * px[1] + 0.114 * px[2])
                    }
                    (ChannelPolicy::Rgb, 1) => out.extend_from_slice(&[px[0]; 3]),
                    (ChannelPolicy::Rgb, _) => out.extend_from_slice(&px),
                }
            }
        }
    }
}

/// For each output index, the input indices and weights (summing to one).
fn resize_weights(input: usize, output: usize, method: ResizeMethod) -> Vec<Vec<(usize, f32)>> {
    if input == output {
        return (0..input).map(|i| vec![(i, 1.0)]).collect();
    }
    let scale = input as f64 / output as f64;
    (0..output)
        .map(|o| match method {
            ResizeMethod::Area if scale >= 1.0 => {
                // Average over the input interval the output pixel covers.
                let (lo, hi) = (o as f64 * scale, (o + 1) as f64 * scale);
                (lo.floor() as usize..(hi.ceil() as usize).min(input))
                    .map(|i| {
                        let overlap = (hi.min(i as f64 + 1.0) - lo.max(i as f64)).max(0.0);
                        (i, (overlap / scale) as f32)
                    })
                    .filter(|&(_, w)| w > 0.0)
                    .collect()
            }
            _ => {
                // Bilinear with half-pixel centres (also used to upscale).
                let centre = ((o as f64 + 0.5) * scale - 0.5).clamp(0.0, (input - 1) as f64);
                let i0 = centre.floor() as usize;
                let i1 = (i0 + 1).min(input - 1);
                let f = (centre - i0 as f64) as f32;
                if i0 == i1 || f == 0.0 {
                    vec![(i0, 1.0)]
                } else {
                    vec![(i0, 1.0 - f), (i1, f)]
                }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_binary_far_from_its_checkout_finds_the_embedded_data_beside_it() {
        let root = gpicl_testing::scratch_dir("embedded-dir");
        let (built, beside) = (root.join("checkout/data"), root.join("bin/data"));
        std::fs::create_dir_all(beside.join("mnist")).unwrap();
        assert_eq!(
            choose_embedded_dir(built.clone(), Some(beside.clone())),
            beside
        );
        std::fs::create_dir_all(built.join("mnist")).unwrap();
        assert_eq!(
            choose_embedded_dir(built.clone(), Some(beside.clone())),
            built,
            "the checkout first"
        );
        std::fs::remove_dir_all(built.join("mnist")).unwrap();
        std::fs::remove_dir_all(beside.join("mnist")).unwrap();
        assert_eq!(
            choose_embedded_dir(built.clone(), Some(beside)),
            built,
            "neither: name the checkout's"
        );
        assert!(
            embedded_data_dir().join("mnist").is_dir(),
            "this checkout's data/"
        );
        std::fs::remove_dir_all(&root).unwrap();
    }
    use crate::idx::{write_idx, IdxArray};
    use gpicl_testing::scratch_dir;

    fn write_dataset(dir: &Path, name: &str, images: IdxArray, labels: IdxArray) {
        let d = dir.join(name);
        std::fs::create_dir_all(&d).unwrap();
        write_idx(&d.join("t10k-images-idx3-ubyte.gz"), &images).unwrap();
        write_idx(&d.join("t10k-labels-idx1-ubyte"), &labels).unwrap();
    }

    #[test]
    fn labels_outside_a_datasets_own_classes_and_single_class_datasets_are_refused() {
        let dir = scratch_dir("own-labels");
        let images = || IdxArray {
            dims: vec![3, 2, 2],
            data: vec![7; 12],
        };
        let labels = |data: Vec<u8>| IdxArray {
            dims: vec![3],
            data,
        };
        write_dataset(&dir, "all200", images(), labels(vec![200; 3]));
        let single = dir.join("single");
        std::fs::create_dir_all(&single).unwrap();
        write_idx(&single.join("train-images-idx3-ubyte.gz"), &images()).unwrap();
        write_idx(
            &single.join("train-labels-idx1-ubyte.gz"),
            &labels(vec![4; 3]),
        )
        .unwrap();
        write_dataset(&dir, "wide", images(), labels(vec![0, 11, 12]));
        let listed: String = (0..13).map(|i| format!("{i}\tc{i}\n")).collect();
        std::fs::write(dir.join("wide/classes.txt"), listed).unwrap();
        let roots = DataRoots::only(vec![dir.clone()]);
        let cfg = DataConfig::default();
        let wide = ImageSet::load(&roots, "wide", Split::Test, &cfg).unwrap();
        assert_eq!(wide.classes, 13, "classes.txt lists more than ten");
        let err = ImageSet::load(&roots, "all200", Split::Test, &cfg)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("t10k-labels-idx1-ubyte") && err.contains("up to 200"),
            "{err}"
        );
        write_dataset(&dir, "sparse", images(), labels(vec![0, 200, 200]));
        let err = ImageSet::load(&roots, "sparse", Split::Test, &cfg)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("up to 200") && err.contains("classes.txt"),
            "{err}"
        );
        std::fs::write(dir.join("wide/classes.txt"), "0\ta\n1\tb\n").unwrap();
        let err = ImageSet::load(&roots, "wide", Split::Test, &cfg)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("label 11 at index 1") && err.contains("2 classes"),
            "{err}"
        );
        let err = ImageSet::load(&roots, "single", Split::Train, &cfg)
            .unwrap_err()
            .to_string();
        assert!(err.contains("at least two classes"), "{err}");
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn dataset_names_that_leave_the_data_folder_are_refused() {
        let root = scratch_dir("dotdot");
        let data = root.join("data");
        std::fs::create_dir_all(&data).unwrap();
        write_dataset(
            &root,
            "outside",
            IdxArray {
                dims: vec![2, 2, 2],
                data: vec![1; 8],
            },
            IdxArray {
                dims: vec![2],
                data: vec![0, 1],
            },
        );
        let roots = DataRoots::only(vec![data.clone()]);
        let err =
            ImageSet::load(&roots, "../outside", Split::Test, &DataConfig::default()).unwrap_err();
        assert!(matches!(err, TaskError::UnsafeName { .. }), "{err}");
        assert!(!roots.has_split("../outside", Split::Test));
        assert!(roots.find("../outside").is_none());
        std::fs::remove_dir_all(root).ok();
    }

    #[test]
    fn a_data_dir_that_does_not_exist_is_an_error_naming_it() {
        let missing = gpicl_testing::absent_path("no-data-dir");
        let err = DataRoots::with_data_dir(Some(&missing))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--data-dir") && err.contains(&missing.display().to_string()),
            "{err}"
        );
        assert!(DataRoots::with_data_dir(None).is_ok());
    }

    #[test]
    fn area_resize_averages_blocks() {
        let w = resize_weights(4, 2, ResizeMethod::Area);
        assert_eq!(w[0], vec![(0, 0.5), (1, 0.5)]);
        assert_eq!(w[1], vec![(2, 0.5), (3, 0.5)]);
        let odd = resize_weights(28, 14, ResizeMethod::Area);
        assert!(odd
            .iter()
            .all(|ws| (ws.iter().map(|p| p.1).sum::<f32>() - 1.0).abs() < 1e-6));
        let bil = resize_weights(28, 14, ResizeMethod::Bilinear);
        assert!(bil
            .iter()
            .all(|ws| (ws.iter().map(|p| p.1).sum::<f32>() - 1.0).abs() < 1e-6));
    }

    #[test]
    fn grayscale_and_colour_datasets_end_up_the_same_size() {
        let dir = scratch_dir("shape");
        write_dataset(
            &dir,
            "gray",
            IdxArray {
                dims: vec![2, 4, 4],
                data: vec![255; 32],
            },
            IdxArray {
                dims: vec![2],
                data: vec![0, 1],
            },
        );
        write_dataset(
            &dir,
            "colour",
            IdxArray {
                dims: vec![2, 4, 4, 3],
                data: vec![255; 96],
            },
            IdxArray {
                dims: vec![2],
                data: vec![3, 9],
            },
        );
        let roots = DataRoots::only(vec![dir.clone()]);
        let cfg = DataConfig {
            image_size: 2,
            ..DataConfig::default()
        };
        let g = ImageSet::load(&roots, "gray", Split::Test, &cfg).unwrap();
        let c = ImageSet::load(&roots, "colour", Split::Test, &cfg).unwrap();
        assert_eq!((g.n_x, c.n_x), (4, 4));
        assert!(c.x.iter().all(|&v| (v - 1.0).abs() < 1e-5));
        let rgb = DataConfig {
            channels: ChannelPolicy::Rgb,
            ..cfg
        };
        assert_eq!(
            ImageSet::load(&roots, "gray", Split::Test, &rgb)
                .unwrap()
                .n_x,
            12
        );
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn image_and_label_count_mismatch_names_the_file() {
        let dir = scratch_dir("mismatch");
        write_dataset(
            &dir,
            "bad",
            IdxArray {
                dims: vec![3, 2, 2],
                data: vec![0; 12],
            },
            IdxArray {
                dims: vec![2],
                data: vec![0, 1],
            },
        );
        let err = ImageSet::load(
            &DataRoots::only(vec![dir.clone()]),
            "bad",
            Split::Test,
            &DataConfig::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("t10k-labels-idx1-ubyte") && err.contains("2 labels for 3 images"),
            "{err}"
        );
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn labels_outside_a_known_datasets_classes_are_refused_naming_file_and_index() {
        let dir = scratch_dir("labels-200");
        write_dataset(
            &dir,
            "mnist",
            IdxArray {
                dims: vec![3, 28, 28],
                data: vec![7; 3 * 784],
            },
            IdxArray {
                dims: vec![3],
                data: vec![4, 200, 200],
            },
        );
        let err = ImageSet::load(
            &DataRoots::only(vec![dir.clone()]),
            "mnist",
            Split::Test,
            &DataConfig::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("t10k-labels-idx1-ubyte")
                && err.contains("label 200 at index 1")
                && err.contains("10 classes"),
            "{err}"
        );
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn images_of_another_shape_than_the_catalogue_says_are_refused() {
        let dir = scratch_dir("cifar-as-mnist");
        write_dataset(
            &dir,
            "mnist",
            IdxArray {
                dims: vec![2, 32, 32, 3],
                data: vec![0; 2 * 32 * 32 * 3],
            },
            IdxArray {
                dims: vec![2],
                data: vec![0, 1],
            },
        );
        let err = ImageSet::load(
            &DataRoots::only(vec![dir.clone()]),
            "mnist",
            Split::Test,
            &DataConfig::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("t10k-images") && err.contains("32×32×3") && err.contains("28×28×1"),
            "{err}"
        );
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn images_without_pixels_are_refused() {
        let dir = scratch_dir("empty-pixels");
        write_dataset(
            &dir,
            "flat",
            IdxArray {
                dims: vec![2, 0, 4],
                data: vec![],
            },
            IdxArray {
                dims: vec![2],
                data: vec![0, 1],
            },
        );
        let err = ImageSet::load(
            &DataRoots::only(vec![dir.clone()]),
            "flat",
            Split::Test,
            &DataConfig {
                image_size: 0,
                ..DataConfig::default()
            },
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("t10k-images") && err.contains("0×4"), "{err}");
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn a_missing_dataset_says_where_it_looked() {
        let err = DataRoots::only(vec![PathBuf::from("/nowhere")])
            .locate("kmnist", Split::Train)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("kmnist") && err.contains("/nowhere") && err.contains("--data-dir"),
            "{err}"
        );
        assert!(err.contains("cargo xtask data fetch kmnist"), "{err}");
        let err = DataRoots::only(vec![PathBuf::from("/nowhere")])
            .locate("omniglot", Split::Train)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("cargo xtask data import omniglot DIR"),
            "{err}"
        );
        let err = DataRoots::only(vec![PathBuf::from("/nowhere")])
            .locate("mnsit", Split::Train)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("not a known dataset") && err.contains("fashion_mnist"),
            "{err}"
        );
    }

    #[test]
    fn the_embedded_data_is_found() {
        let roots = DataRoots::only(vec![embedded_data_dir()]);
        let names = roots.available(Split::Test);
        assert!(names.contains(&"mnist".to_string()), "{names:?}");
        let set = ImageSet::load(&roots, "mnist", Split::Test, &DataConfig::default()).unwrap();
        assert_eq!(set.n_x, 196);
        assert!(set.x.iter().all(|v| (0.0..=1.0).contains(v)));
    }
}
