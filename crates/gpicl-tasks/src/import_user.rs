//! Importing datasets of your own into the cache, where `train` and
//! `eval-ood` find them by name: image folders ([`crate::image_folder`])
//! and tables ([`crate::table`]).
//!
//! Tables are stored in the cache's image format (IDX bytes) as `1 × D`
//! "images": each feature is scaled to `[0, 255]` by its minimum and
//! maximum over the training split and rounded, 256 levels per feature.
//! Train on them with `data.image_size = 0`. `predict` reads tables in full
//! precision instead.

use crate::cache::Staging;
use crate::config::ChannelPolicy;
use crate::dataset::Split;
use crate::error::{Result, TaskError};
use crate::idx::IdxArray;
use crate::image_folder::read_image_folder;
use crate::table::{read_table, Table};
use std::path::{Path, PathBuf};

/// Label names in order of first appearance over `tables` (the label
/// index of each name), or an error if there is only one.
pub fn class_names_of(tables: &[&Table]) -> Result<Vec<String>> {
    let mut names: Vec<String> = Vec::new();
    for t in tables {
        for l in &t.labels {
            if !names.contains(l) {
                names.push(l.clone());
            }
        }
    }
    if names.len() < 2 {
        return Err(TaskError::Corrupt {
            path: tables[0].path.clone(),
            reason: format!(
                "has {} class(es): classification needs at least two",
                names.len()
            ),
        });
    }
    Ok(names)
}

/// Imports an image folder as dataset `name`; returns its cache folder.
pub fn import_image_folder(
    dir: &Path,
    name: &str,
    cache: &Path,
    image_size: Option<usize>,
    channels: ChannelPolicy,
) -> Result<PathBuf> {
    let folder = read_image_folder(dir, image_size, channels)?;
    let (h, w, c) = folder.shape;
    let mut staging = Staging::new(cache, name, folder.shape)?;
    for split in &folder.splits {
        let n = split.labels.len();
        let dims = if c == 1 {
            vec![n, h, w]
        } else {
            vec![n, h, w, c]
        };
        staging.write_split(
            split.split,
            &IdxArray {
                dims,
                data: split.pixels.clone(),
            },
            &IdxArray {
                dims: vec![n],
                data: split.labels.clone(),
            },
        )?;
    }
    staging.write_class_names(&folder.classes)?;
    let shown = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    staging.commit(format!("image-folder:{}", shown.display()))
}

/// Imports a table (and optionally a test table with the same columns)
/// as dataset `name`; returns its cache folder.
pub fn import_table(
    train: &Path,
    test: Option<&Path>,
    label_column: &str,
    name: &str,
    cache: &Path,
) -> Result<PathBuf> {
    let train = read_table(train, label_column)?;
    let test = test.map(|p| read_table(p, label_column)).transpose()?;
    if let Some(t) = &test {
        if t.features != train.features {
            return Err(TaskError::Corrupt {
                path: t.path.clone(),
                reason: format!(
                    "has columns {:?}, but the training table {} has {:?}",
                    t.features,
                    train.path.display(),
                    train.features
                ),
            });
        }
    }
    let mut tables = vec![&train];
    tables.extend(test.as_ref());
    let classes = class_names_of(&tables)?;
    if classes.len() > u8::MAX as usize + 1 {
        return Err(TaskError::Corrupt {
            path: train.path.clone(),
            reason: format!("{} classes: at most 256 are supported", classes.len()),
        });
    }
    let d = train.features.len();
    let range: Vec<(f32, f32)> = (0..d)
        .map(|j| {
            let column = (0..train.rows()).map(|i| train.row(i)[j]);
            column.fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), v| {
                (lo.min(v), hi.max(v))
            })
        })
        .collect();
    let mut staging = Staging::new(cache, name, (1, d, 1))?;
    for (split, table) in [(Split::Train, Some(&train)), (Split::Test, test.as_ref())] {
        let Some(table) = table else { continue };
        let n = table.rows();
        let data = (0..n)
            .flat_map(|i| {
                table
                    .row(i)
                    .iter()
                    .zip(&range)
                    .map(|(&v, &(lo, hi))| quantise(v, lo, hi))
            })
            .collect();
        let labels = table
            .labels
            .iter()
            .map(|l| classes.iter().position(|c| c == l).expect("a known class") as u8)
            .collect();
        staging.write_split(
            split,
            &IdxArray {
                dims: vec![n, 1, d],
                data,
            },
            &IdxArray {
                dims: vec![n],
                data: labels,
            },
        )?;
    }
    staging.write_class_names(&classes)?;
    let shown = std::fs::canonicalize(&train.path).unwrap_or_else(|_| train.path.clone());
    staging.commit(format!("table:{}", shown.display()))
}

/// `v` scaled from `[lo, hi]` to `0..=255` (clamped; constant columns are 0).
fn quantise(v: f32, lo: f32, hi: f32) -> u8 {
    if hi > lo {
        (((v - lo) / (hi - lo)).clamp(0.0, 1.0) * 255.0).round() as u8
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DataConfig, DataRoots, ImageSet};
    use gpicl_testing::scratch_dir;

    #[test]
    fn an_imported_table_loads_by_name_with_its_labels_and_scaled_features() {
        let dir = scratch_dir("table");
        let train = dir.join("train.csv");
        std::fs::write(&train, "x,y,label\n0,10,b\n5,10,a\n10,10,b\n").unwrap();
        let test = dir.join("test.csv");
        std::fs::write(&test, "x,y,label\n20,10,a\n").unwrap();
        let cache = dir.join("cache");
        import_table(&train, Some(&test), "label", "my_table", &cache).unwrap();
        let cfg = DataConfig {
            image_size: 0,
            ..DataConfig::default()
        };
        let roots = DataRoots::only(vec![cache.clone()]);
        let set = ImageSet::load(&roots, "my_table", Split::Train, &cfg).unwrap();
        assert_eq!((set.len(), set.n_x), (3, 2));
        // Labels in order of first appearance: b = 0, a = 1.
        assert_eq!(set.labels, vec![0, 1, 0]);
        assert_eq!(set.example(1), &[128.0 / 255.0, 0.0]);
        let test_set = ImageSet::load(&roots, "my_table", Split::Test, &cfg).unwrap();
        assert_eq!(test_set.example(0)[0], 1.0, "clamped to the training range");
        assert_eq!(
            std::fs::read_to_string(cache.join("my_table/classes.txt")).unwrap(),
            "0\tb\n1\ta\n"
        );
        let single = dir.join("single.csv");
        std::fs::write(&single, "x,label\n1,a\n2,a\n").unwrap();
        let err = import_table(&single, None, "label", "s", &cache)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("single.csv") && err.contains("at least two"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_imported_image_folder_loads_by_name_with_both_splits() {
        let dir = scratch_dir("folder");
        for (split, class, value) in [
            ("train", "cat", 0u8),
            ("train", "dog", 255),
            ("test", "dog", 255),
        ] {
            let path = dir.join(format!("pets/{split}/{class}/1.png"));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            image::GrayImage::from_pixel(6, 6, image::Luma([value]))
                .save(&path)
                .unwrap();
        }
        let cache = dir.join("cache");
        import_image_folder(&dir.join("pets"), "pets", &cache, None, ChannelPolicy::Gray).unwrap();
        let roots = DataRoots::only(vec![cache]);
        let cfg = DataConfig {
            image_size: 3,
            ..DataConfig::default()
        };
        let set = ImageSet::load(&roots, "pets", Split::Train, &cfg).unwrap();
        assert_eq!((set.len(), set.n_x, set.labels.clone()), (2, 9, vec![0, 1]));
        assert!(set.example(1).iter().all(|&v| v == 1.0));
        assert_eq!(
            ImageSet::load(&roots, "pets", Split::Test, &cfg)
                .unwrap()
                .labels,
            vec![1]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
