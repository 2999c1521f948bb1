//! Data of one's own for a meta-trained learner (`predict`): the training
//! examples and the queries, from a table (CSV or parquet, [`crate::table`])
//! or an image folder ([`crate::image_folder`]), as feature rows with class
//! names.
//!
//! ```no_run
//! use gpicl_tasks::own_data::read_examples;
//! use gpicl_tasks::ChannelPolicy;
//! use std::path::Path;
//! let (train, queries) = read_examples(
//!     Path::new("examples/tables/iris/train.csv"),
//!     Some(Path::new("examples/tables/iris/test.csv")),
//!     "label",
//!     0,
//!     ChannelPolicy::Gray,
//! )?;
//! assert_eq!(train.features.len(), 4);
//! # let _ = queries;
//! # Ok::<(), gpicl_tasks::TaskError>(())
//! ```

use crate::dataset::unit_pixel;
use crate::error::{Result, TaskError};
use crate::image_folder::{read_image_files, read_image_folder, FolderSplit};
use crate::table::{align_features, read_query_table, read_table};
use crate::{ChannelPolicy, Split};
use std::path::{Path, PathBuf};

/// Examples read from a table or an image folder.
#[derive(Clone, Debug, Default)]
pub struct Examples {
    /// One feature row per example (pixels in `[0, 1]` for images).
    pub x: Vec<Vec<f32>>,
    /// Class names, one per row; empty for unlabelled queries.
    pub labels: Vec<String>,
    /// Feature names (tables), in the training table's order.
    pub features: Vec<String>,
    /// Each row's file (image folders).
    pub files: Vec<PathBuf>,
}

fn rows_of(flat: &[f32], d: usize) -> Vec<Vec<f32>> {
    flat.chunks_exact(d.max(1)).map(<[f32]>::to_vec).collect()
}

fn from_split(split: &FolderSplit, classes: &[String], d: usize) -> Examples {
    Examples {
        x: split
            .pixels
            .chunks_exact(d)
            .map(|image| image.iter().map(|&p| unit_pixel(p as f32)).collect())
            .collect(),
        labels: split
            .labels
            .iter()
            .map(|&l| classes[l as usize].clone())
            .collect(),
        features: Vec::new(),
        files: split.files.clone(),
    }
}

fn has_class_folders(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .filter_map(|e| e.ok())
            .any(|e| e.path().is_dir() && !e.file_name().to_string_lossy().starts_with('.'))
    })
}

fn reading(what: &str, path: &Path) -> impl FnOnce(TaskError) -> TaskError {
    let (what, path) = (what.to_string(), path.to_path_buf());
    move |e| TaskError::Corrupt {
        path,
        reason: format!("reading the {what}: {e}"),
    }
}

/// Reads the training examples (`train`: a table, or an image folder with
/// one sub-folder per class, or with `train/` and `test/` inside) and the
/// queries (`test`: a table with the same feature columns, an image folder,
/// or a folder of loose images; for an image folder with a `test/` split it
/// may be left out). `label` names a table's class column; images are
/// resized to `image_size` (0: kept) and read with `channels`.
pub fn read_examples(
    train: &Path,
    test: Option<&Path>,
    label: &str,
    image_size: usize,
    channels: ChannelPolicy,
) -> Result<(Examples, Examples)> {
    if train.is_dir() {
        let size = Some(image_size).filter(|&s| s > 0);
        let folder =
            read_image_folder(train, size, channels).map_err(reading("training images", train))?;
        let (h, w, c) = folder.shape;
        let d = h * w * c;
        let train_split = folder
            .splits
            .iter()
            .find(|s| s.split == Split::Train)
            .ok_or_else(|| TaskError::Corrupt {
                path: train.to_path_buf(),
                reason: "has a test/ folder but no train/ folder".into(),
            })?;
        let train_examples = from_split(train_split, &folder.classes, d);
        let queries = match test {
            None => match folder.splits.iter().find(|s| s.split == Split::Test) {
                Some(split) => from_split(split, &folder.classes, d),
                None => {
                    return Err(TaskError::config(
                        "--test",
                        format!(
                            "is needed: {} has no test/ folder to take the queries from",
                            train.display()
                        ),
                    ))
                }
            },
            Some(dir) if !dir.is_dir() => {
                return Err(TaskError::config(
                    "--test",
                    format!(
                    "{}: the training examples are an image folder, so the queries must be one too",
                    dir.display()
                ),
                ))
            }
            Some(dir) if has_class_folders(dir) => {
                let queries = read_image_folder(dir, Some(h).filter(|_| size.is_some()), channels)
                    .map_err(reading("test images", dir))?;
                if queries.shape != folder.shape {
                    return Err(TaskError::config(
                        "--image-size",
                        format!(
                            "the test images in {} are {:?} (h, w, c), the training images {:?}: pass --image-size",
                            dir.display(),
                            queries.shape,
                            folder.shape
                        ),
                    ));
                }
                from_split(&queries.splits[0], &queries.classes, d)
            }
            Some(dir) => {
                let split = read_image_files(dir, Some(h).filter(|_| size.is_some()), channels)
                    .map_err(reading("test images", dir))?;
                if split.pixels.len() != split.files.len() * d {
                    return Err(TaskError::config(
                        "--image-size",
                        format!(
                            "the images in {} do not have the training images' shape {:?}: pass --image-size",
                            dir.display(),
                            folder.shape
                        ),
                    ));
                }
                from_split(&split, &[], d)
            }
        };
        return Ok((train_examples, queries));
    }
    let table = read_table(train, label)?;
    let d = table.features.len();
    let train_examples = Examples {
        x: rows_of(&table.x, d),
        labels: table.labels.clone(),
        features: table.features.clone(),
        files: Vec::new(),
    };
    let Some(test_path) = test else {
        return Err(TaskError::config(
            "--test",
            "is needed with a training table",
        ));
    };
    if test_path.is_dir() {
        return Err(TaskError::config(
            "--test",
            format!(
                "{}: the training examples are a table, so the queries must be a table too",
                test_path.display()
            ),
        ));
    }
    let queries = read_query_table(test_path, label)?;
    let aligned = align_features(&queries, &train_examples.features)?;
    let test_examples = Examples {
        x: rows_of(&aligned, d),
        labels: queries.labels.clone(),
        features: train_examples.features.clone(),
        files: Vec::new(),
    };
    Ok((train_examples, test_examples))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_training_table_needs_queries_of_the_same_kind() {
        let dir = gpicl_testing::scratch_dir("own-data");
        let train = dir.join("train.csv");
        std::fs::write(&train, "a,b,label\n1,2,x\n3,4,y\n").unwrap();
        let err = read_examples(&train, None, "label", 0, ChannelPolicy::Gray)
            .unwrap_err()
            .to_string();
        assert!(err.contains("--test") && err.contains("needed"), "{err}");
        let err = read_examples(&train, Some(&dir), "label", 0, ChannelPolicy::Gray)
            .unwrap_err()
            .to_string();
        assert!(err.contains("queries must be a table"), "{err}");
        let test = dir.join("test.csv");
        std::fs::write(&test, "b,a\n5,6\n").unwrap();
        let (train, queries) =
            read_examples(&train, Some(&test), "label", 0, ChannelPolicy::Gray).unwrap();
        assert_eq!(train.x, [vec![1.0, 2.0], vec![3.0, 4.0]]);
        assert_eq!(queries.x, [vec![6.0, 5.0]], "columns aligned by name");
        assert!(queries.labels.is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
