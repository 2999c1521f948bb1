//! Importing local copies of datasets in their original formats into the
//! cache: MNIST-style IDX files (MNIST, Fashion-MNIST, KMNIST, EMNIST and
//! gpicl's own layout) and the CIFAR-10 binary batches.

use crate::cache::Staging;
use crate::catalog::{DatasetInfo, ImportFormat};
use crate::dataset::Split;
use crate::error::{Result, TaskError};
use crate::idx::{read_idx, IdxArray};
use std::path::{Path, PathBuf};

/// Bytes of one CIFAR-10 binary record: a label, then 32×32 R, G, B planes.
const CIFAR_RECORD: usize = 1 + 3 * 32 * 32;

/// Imports `info`'s dataset from `dir` into `cache`; returns its folder.
/// Every split found is imported; at least one must be.
pub fn import_dir(info: &DatasetInfo, dir: &Path, cache: &Path) -> Result<PathBuf> {
    if !dir.is_dir() {
        return Err(TaskError::Io {
            path: dir.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such directory"),
        });
    }
    let mut staging = Staging::new(cache, info.name, info.shape)?;
    let mut tried = Vec::new();
    for format in info.import {
        let splits = match format {
            ImportFormat::Idx => find_idx_splits(info, dir)?,
            ImportFormat::CifarBinary => find_cifar_splits(dir)?,
        };
        tried.push(describe(*format));
        if splits.is_empty() {
            continue;
        }
        for (split, images, labels) in splits {
            let (images, labels) = match format {
                ImportFormat::Idx => load_idx_split(info, &images[0], &labels)?,
                ImportFormat::CifarBinary => load_cifar_split(&images)?,
            };
            staging.write_split(split, &images, &labels)?;
        }
        if let Some(names) = class_names(dir)? {
            staging.write_class_names(&names)?;
        }
        let shown = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        return staging.commit(format!("import:{}", shown.display()));
    }
    Err(TaskError::Corrupt {
        path: dir.to_path_buf(),
        reason: format!(
            "holds no {} files for `{}`: expected {}",
            info.name,
            info.name,
            tried.join(", or ")
        ),
    })
}

fn describe(format: ImportFormat) -> &'static str {
    match format {
        ImportFormat::Idx => {
            "IDX files named like `train-images-idx3-ubyte[.gz]` and `t10k-labels-idx1-ubyte[.gz]` (`test` also accepted)"
        }
        ImportFormat::CifarBinary => {
            "CIFAR-10 binary batches `data_batch_1.bin`…`data_batch_5.bin` and `test_batch.bin` (or a `cifar-10-batches-bin/` folder)"
        }
    }
}

/// `(split, image files, label file)` for each split present.
type Found = Vec<(Split, Vec<PathBuf>, PathBuf)>;

fn find_idx_splits(info: &DatasetInfo, dir: &Path) -> Result<Found> {
    let mut candidates: Vec<(Split, bool, PathBuf)> = Vec::new();
    for entry in read_dir(dir)? {
        let name = entry
            .file_name()
            .map(|n| n.to_string_lossy().to_lowercase())
            .unwrap_or_default();
        if !(name.contains("idx") || name.contains("ubyte")) {
            continue;
        }
        if info.idx_name_filter.is_some_and(|f| !name.contains(f)) {
            continue;
        }
        let split = if name.contains("train") {
            Split::Train
        } else if name.contains("t10k") || name.contains("test") {
            Split::Test
        } else {
            continue;
        };
        let is_images = if name.contains("images") {
            true
        } else if name.contains("labels") {
            false
        } else {
            continue;
        };
        candidates.push((split, is_images, entry));
    }
    let mut found = Vec::new();
    for split in [Split::Train, Split::Test] {
        let pick = |images: bool| -> Result<Option<PathBuf>> {
            let mut files: Vec<&PathBuf> = candidates
                .iter()
                .filter(|(s, i, _)| *s == split && *i == images)
                .map(|(_, _, p)| p)
                .collect();
            // The same file raw and gzipped is one file: prefer the archive.
            if files.len() == 2 {
                let stem = |p: &Path| p.with_extension("").to_string_lossy().to_string();
                let gz = files
                    .iter()
                    .position(|p| p.extension().is_some_and(|e| e == "gz"));
                if let Some(gz) = gz {
                    if stem(files[gz]) == files[1 - gz].to_string_lossy() {
                        files = vec![files[gz]];
                    }
                }
            }
            match files.len() {
                0 => Ok(None),
                1 => Ok(Some(files[0].clone())),
                _ => Err(TaskError::Corrupt {
                    path: dir.to_path_buf(),
                    reason: format!(
                        "several candidate {} {} files: {}; import from a folder holding one dataset",
                        split.file_prefix(),
                        if images { "image" } else { "label" },
                        files
                            .iter()
                            .map(|p| p.display().to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                }),
            }
        };
        match (pick(true)?, pick(false)?) {
            (Some(images), Some(labels)) => found.push((split, vec![images], labels)),
            (None, None) => {}
            (Some(one), None) => {
                return Err(TaskError::Corrupt {
                    path: one,
                    reason: "has no matching labels file in the same folder".into(),
                })
            }
            (None, Some(one)) => {
                return Err(TaskError::Corrupt {
                    path: one,
                    reason: "has no matching images file in the same folder".into(),
                })
            }
        }
    }
    Ok(found)
}

fn load_idx_split(
    info: &DatasetInfo,
    images: &Path,
    labels: &Path,
) -> Result<(IdxArray, IdxArray)> {
    let mut images_arr = read_idx(images)?;
    let mut labels_arr = read_idx(labels)?;
    let (h, w, c) = info.shape;
    let n = images_arr.dims[0];
    let shape_ok = match images_arr.dims[..] {
        [_, ih, iw] => (ih, iw, 1) == (h, w, c),
        [_, ih, iw, ic] => (ih, iw, ic) == (h, w, c),
        _ => false,
    };
    if !shape_ok {
        return Err(TaskError::Corrupt {
            path: images.to_path_buf(),
            reason: format!(
                "dimensions {:?}: `{}` images are {h}×{w}×{c}",
                images_arr.dims, info.name
            ),
        });
    }
    if labels_arr.dims != [n] {
        return Err(TaskError::Corrupt {
            path: labels.to_path_buf(),
            reason: format!(
                "dimensions {:?}: expected {n} labels, one per image of {}",
                labels_arr.dims,
                images.display()
            ),
        });
    }
    if info.transposed {
        // EMNIST stores each image column-major.
        let size = h * w * c;
        for img in images_arr.data.chunks_exact_mut(size) {
            let original = img.to_vec();
            for i in 0..h {
                for j in 0..w {
                    for ch in 0..c {
                        img[(i * w + j) * c + ch] = original[(j * h + i) * c + ch];
                    }
                }
            }
        }
    }
    for label in labels_arr.data.iter_mut() {
        let shifted = label.checked_sub(info.label_offset);
        match shifted {
            Some(l) if (l as usize) < info.classes => *label = l,
            _ => {
                return Err(TaskError::Corrupt {
                    path: labels.to_path_buf(),
                    reason: format!(
                        "label {label} is outside `{}`'s {} classes (labels start at {})",
                        info.name, info.classes, info.label_offset
                    ),
                })
            }
        }
    }
    images_arr.dims = if c == 1 {
        vec![n, h, w]
    } else {
        vec![n, h, w, c]
    };
    Ok((images_arr, labels_arr))
}

fn find_cifar_splits(dir: &Path) -> Result<Found> {
    let dir = if dir.join("cifar-10-batches-bin").is_dir() {
        dir.join("cifar-10-batches-bin")
    } else {
        dir.to_path_buf()
    };
    let train: Vec<PathBuf> = (1..=5)
        .map(|i| dir.join(format!("data_batch_{i}.bin")))
        .filter(|p| p.is_file())
        .collect();
    let test = dir.join("test_batch.bin");
    let mut found = Vec::new();
    if !train.is_empty() {
        found.push((Split::Train, train, PathBuf::new()));
    }
    if test.is_file() {
        found.push((Split::Test, vec![test], PathBuf::new()));
    }
    Ok(found)
}

fn load_cifar_split(files: &[PathBuf]) -> Result<(IdxArray, IdxArray)> {
    let mut images = Vec::new();
    let mut labels = Vec::new();
    for path in files {
        let bytes = std::fs::read(path).map_err(|source| TaskError::Io {
            path: path.clone(),
            source,
        })?;
        if bytes.is_empty() || bytes.len() % CIFAR_RECORD != 0 {
            return Err(TaskError::Corrupt {
                path: path.clone(),
                reason: format!(
                    "{} bytes is not a whole number of {CIFAR_RECORD}-byte CIFAR-10 records",
                    bytes.len()
                ),
            });
        }
        for record in bytes.chunks_exact(CIFAR_RECORD) {
            if record[0] >= 10 {
                return Err(TaskError::Corrupt {
                    path: path.clone(),
                    reason: format!("label {} outside CIFAR-10's 10 classes", record[0]),
                });
            }
            labels.push(record[0]);
            let planes = &record[1..];
            for px in 0..32 * 32 {
                for ch in 0..3 {
                    images.push(planes[ch * 1024 + px]);
                }
            }
        }
    }
    let n = labels.len();
    Ok((
        IdxArray {
            dims: vec![n, 32, 32, 3],
            data: images,
        },
        IdxArray {
            dims: vec![n],
            data: labels,
        },
    ))
}

/// Class names from `classes.txt` (`index<TAB>name`) or CIFAR-10's
/// `batches.meta.txt` (one name per line).
fn class_names(dir: &Path) -> Result<Option<Vec<String>>> {
    let candidates = [
        dir.join("classes.txt"),
        dir.join("batches.meta.txt"),
        dir.join("cifar-10-batches-bin/batches.meta.txt"),
    ];
    for path in candidates {
        if !path.is_file() {
            continue;
        }
        let text = std::fs::read_to_string(&path).map_err(|source| TaskError::Io {
            path: path.clone(),
            source,
        })?;
        let names = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(|l| l.split_once('\t').map_or(l, |(_, n)| n).to_string())
            .collect();
        return Ok(Some(names));
    }
    Ok(None)
}

fn read_dir(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|source| TaskError::Io {
            path: dir.to_path_buf(),
            source,
        })?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    Ok(files)
}
