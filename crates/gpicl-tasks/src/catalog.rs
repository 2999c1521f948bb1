//! The datasets gpicl knows by name: shape, classes, licence, and where
//! each can be fetched from (the Hugging Face Hub) or imported from (a local
//! copy in its original format).

use crate::error::{Result, TaskError};
use crate::spec::{Split, RANDOM_DATASET};
use crate::tabular::TABULAR_DATASET;

/// A dataset's published parquet conversion on the Hugging Face Hub.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HubSource {
    /// Dataset repository, e.g. `ylecun/mnist`.
    pub repo: &'static str,
    /// Git revision fetched by default: a commit where one was verified,
    /// else a branch (the commit served is recorded in the manifest).
    pub revision: &'static str,
    /// Parquet shards of the train split are the repository's files that
    /// start with this prefix and end in `.parquet`.
    pub train_prefix: &'static str,
    /// Same for the test split.
    pub test_prefix: &'static str,
    /// Column holding the encoded image (a `{bytes, path}` struct or bytes).
    pub image_column: &'static str,
    /// Column holding the integer label.
    pub label_column: &'static str,
}

impl HubSource {
    /// The shard prefix of `split`.
    pub fn prefix(&self, split: Split) -> &'static str {
        match split {
            Split::Train => self.train_prefix,
            Split::Test => self.test_prefix,
        }
    }
}

/// The original file formats `data import` reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImportFormat {
    /// MNIST-style IDX files (`train-images-idx3-ubyte[.gz]`, …), also the
    /// layout of gpicl's own cache.
    Idx,
    /// The CIFAR-10 binary version: `data_batch_{1..5}.bin`, `test_batch.bin`.
    CifarBinary,
}

/// One known dataset.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DatasetInfo {
    /// Name used on the command line and as the folder name.
    pub name: &'static str,
    /// Human-readable title.
    pub title: &'static str,
    /// Image height, width and channels as stored: the native size that
    /// `data.image_size = 0` keeps.
    pub shape: (usize, usize, usize),
    /// Published `(mean, std)` of the pixels in `[0, 1]`, used by
    /// `data.normalization = "fixed"`; `None` where none are published,
    /// and then the dataset's own split's mean and std stand in.
    pub fixed_statistics: Option<(f32, f32)>,
    /// Number of classes (more than 10: tasks draw 10 of them).
    pub classes: usize,
    /// Licence of the data, as its authors state it.
    pub licence: &'static str,
    /// Where the data comes from.
    pub homepage: &'static str,
    /// The Hub source, when there is one.
    pub hub: Option<HubSource>,
    /// Formats a local copy may be imported from.
    pub import: &'static [ImportFormat],
    /// In the original IDX files, only files whose name contains this are
    /// this dataset (EMNIST ships all its variants side by side).
    pub idx_name_filter: Option<&'static str>,
    /// The original IDX images are stored transposed (EMNIST).
    pub transposed: bool,
    /// Subtracted from the original labels so that they start at 0.
    pub label_offset: u8,
}

impl DatasetInfo {
    /// Examples are drawn from 10-class subsets of this dataset.
    pub fn draws_class_subsets(&self) -> bool {
        self.classes > crate::NUM_CLASSES
    }
}

const PNG_IDX: &[ImportFormat] = &[ImportFormat::Idx];

/// Every dataset gpicl knows by name.
pub const DATASETS: &[DatasetInfo] = &[
    DatasetInfo {
        name: "mnist",
        title: "MNIST handwritten digits",
        shape: (28, 28, 1),
        fixed_statistics: Some((0.1307, 0.3081)),
        classes: 10,
        licence: "CC BY-SA 3.0 (Y. LeCun, C. Cortes, C. J. C. Burges)",
        homepage: "http://yann.lecun.com/exdb/mnist/",
        hub: Some(HubSource {
            repo: "ylecun/mnist",
            revision: "77f3279092a1c1579b2250db8eafed0ad422088c",
            train_prefix: "mnist/train-",
            test_prefix: "mnist/test-",
            image_column: "image",
            label_column: "label",
        }),
        import: PNG_IDX,
        idx_name_filter: None,
        transposed: false,
        label_offset: 0,
    },
    DatasetInfo {
        name: "fashion_mnist",
        title: "Fashion-MNIST (Zalando article images)",
        shape: (28, 28, 1),
        fixed_statistics: None,
        classes: 10,
        licence: "MIT (Zalando SE)",
        homepage: "https://github.com/zalandoresearch/fashion-mnist",
        hub: Some(HubSource {
            repo: "zalando-datasets/fashion_mnist",
            revision: "531be5e2ccc9dba0c201ad3ae567a4f3d16ecdd2",
            train_prefix: "fashion_mnist/train-",
            test_prefix: "fashion_mnist/test-",
            image_column: "image",
            label_column: "label",
        }),
        import: PNG_IDX,
        idx_name_filter: None,
        transposed: false,
        label_offset: 0,
    },
    DatasetInfo {
        name: "kmnist",
        title: "Kuzushiji-MNIST (cursive Japanese characters)",
        shape: (28, 28, 1),
        fixed_statistics: Some((0.1918, 0.3483)),
        classes: 10,
        licence: "CC BY-SA 4.0 (ROIS-DS Center for Open Data in the Humanities)",
        homepage: "https://github.com/rois-codh/kmnist",
        hub: Some(HubSource {
            repo: "tanganke/kmnist",
            revision: "6b345bef535b98131f1d945d552906452d19b2f9",
            train_prefix: "kmnist/train-",
            test_prefix: "kmnist/test-",
            image_column: "image",
            label_column: "label",
        }),
        import: PNG_IDX,
        idx_name_filter: None,
        transposed: false,
        label_offset: 0,
    },
    DatasetInfo {
        name: "cifar10",
        title: "CIFAR-10 (32×32 colour images)",
        shape: (32, 32, 3),
        fixed_statistics: Some((0.4734, 0.2516)),
        classes: 10,
        licence: "no licence stated; free for research (A. Krizhevsky, 2009)",
        homepage: "https://www.cs.toronto.edu/~kriz/cifar.html",
        hub: Some(HubSource {
            repo: "uoft-cs/cifar10",
            revision: "0b2714987fa478483af9968de7c934580d0bb9a2",
            train_prefix: "plain_text/train-",
            test_prefix: "plain_text/test-",
            image_column: "img",
            label_column: "label",
        }),
        import: &[ImportFormat::CifarBinary, ImportFormat::Idx],
        idx_name_filter: None,
        transposed: false,
        label_offset: 0,
    },
    DatasetInfo {
        name: "cifar10_jpeg",
        title: "CIFAR-10 test set decoded from JPEG (lossy local copy)",
        shape: (32, 32, 3),
        fixed_statistics: Some((0.4734, 0.2516)),
        classes: 10,
        licence: "as CIFAR-10",
        homepage: "https://www.cs.toronto.edu/~kriz/cifar.html",
        hub: None,
        import: PNG_IDX,
        idx_name_filter: None,
        transposed: false,
        label_offset: 0,
    },
    DatasetInfo {
        name: "svhn",
        title: "SVHN cropped digits (Street View House Numbers)",
        shape: (32, 32, 3),
        fixed_statistics: Some((0.4514, 0.1993)),
        classes: 10,
        licence: "non-commercial use only (Netzer et al., 2011)",
        homepage: "http://ufldl.stanford.edu/housenumbers/",
        hub: Some(HubSource {
            repo: "ufldl-stanford/svhn",
            revision: "main",
            train_prefix: "cropped_digits/train-",
            test_prefix: "cropped_digits/test-",
            image_column: "image",
            label_column: "label",
        }),
        import: PNG_IDX,
        idx_name_filter: None,
        transposed: false,
        label_offset: 0,
    },
    DatasetInfo {
        name: "emnist_balanced",
        title: "EMNIST Balanced (digits and letters, 47 classes)",
        shape: (28, 28, 1),
        fixed_statistics: None,
        classes: 47,
        licence: "CC0 / public domain as NIST Special Database 19 (Cohen et al., 2017)",
        homepage: "https://www.nist.gov/itl/products-and-services/emnist-dataset",
        hub: None,
        import: PNG_IDX,
        idx_name_filter: Some("balanced"),
        transposed: true,
        label_offset: 0,
    },
    DatasetInfo {
        name: "emnist_letters",
        title: "EMNIST Letters (26 classes)",
        shape: (28, 28, 1),
        fixed_statistics: None,
        classes: 26,
        licence: "CC0 / public domain as NIST Special Database 19 (Cohen et al., 2017)",
        homepage: "https://www.nist.gov/itl/products-and-services/emnist-dataset",
        // This mirror stores labels 0–25; the original IDX files use 1–26.
        hub: Some(HubSource {
            repo: "tanganke/emnist_letters",
            revision: "4236c26fe034bc5b23851adc00067fa87b8ac16b",
            train_prefix: "emnist-letters/train-",
            test_prefix: "emnist-letters/test-",
            image_column: "image",
            label_column: "label",
        }),
        import: PNG_IDX,
        idx_name_filter: Some("letters"),
        transposed: true,
        label_offset: 1,
    },
    DatasetInfo {
        name: "omniglot",
        title: "Omniglot handwritten characters (1,623 classes)",
        shape: (105, 105, 1),
        fixed_statistics: None,
        classes: 1623,
        licence: "MIT (B. Lake)",
        homepage: "https://github.com/brendenlake/omniglot",
        hub: None,
        import: PNG_IDX,
        idx_name_filter: None,
        transposed: false,
        label_offset: 0,
    },
];

/// The known dataset called `name`.
pub fn lookup(name: &str) -> Option<&'static DatasetInfo> {
    DATASETS.iter().find(|d| d.name == name)
}

/// The native `(height, width)` of the datasets `names` (one, or the
/// members of a mixture, which must agree): the catalogue's shape, or
/// [`RANDOM_NATIVE_SIZE`] for `random`. A dataset with no catalogue entry
/// (one imported by the user) has its size in its own files only
/// ([`crate::ImageSet::load`]), so asking here is an error naming it.
pub fn native_size(names: &[String]) -> Result<(usize, usize)> {
    let mut size = None;
    for name in names {
        let this = if name == RANDOM_DATASET || name == TABULAR_DATASET {
            RANDOM_NATIVE_SIZE
        } else {
            let info = lookup(name).ok_or_else(|| {
                TaskError::config(
                    "data.image_size",
                    format!(
                        "is 0 (the native size), but `{name}` has no catalogue entry giving its size (known: {}); set data.image_size, or load the dataset to read its size from its files",
                        known_names()
                    ),
                )
            })?;
            (info.shape.0, info.shape.1)
        };
        match size {
            None => size = Some(this),
            Some(first) if first != this => {
                return Err(TaskError::config(
                    "data.image_size",
                    format!(
                        "is 0 (the native size), but the mixture's datasets differ in size ({}×{} and {}×{} for `{name}`); set data.image_size",
                        first.0, first.1, this.0, this.1
                    ),
                ))
            }
            Some(_) => {}
        }
    }
    size.ok_or_else(|| TaskError::config("data.dataset", "names no dataset"))
}

/// The native size of the synthetic `random` dataset (that of MNIST).
pub const RANDOM_NATIVE_SIZE: (usize, usize) = (28, 28);

/// The fixed-normalisation `(mean, std)` of the dataset called `name`: the
/// catalogue's published statistics, `(0, 1)` for `random`, `None` for a
/// dataset without published statistics or without a catalogue entry.
pub fn fixed_statistics(name: &str) -> Option<(f32, f32)> {
    if name == RANDOM_DATASET || name == TABULAR_DATASET {
        return Some((0.0, 1.0));
    }
    lookup(name).and_then(|d| d.fixed_statistics)
}

/// Every known name, for messages.
pub fn known_names() -> String {
    DATASETS
        .iter()
        .map(|d| d.name)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_shapes_are_images() {
        for (i, d) in DATASETS.iter().enumerate() {
            assert!(DATASETS[..i].iter().all(|e| e.name != d.name), "{}", d.name);
            assert!(d.shape.0 > 0 && d.shape.1 > 0 && [1, 3].contains(&d.shape.2));
            assert!(!d.import.is_empty(), "{} can be imported", d.name);
        }
        assert!(lookup("omniglot").unwrap().draws_class_subsets());
        assert!(!lookup("mnist").unwrap().draws_class_subsets());
    }

    #[test]
    fn fixed_statistics_are_the_published_ones_and_absent_where_none_are_published() {
        assert_eq!(fixed_statistics("mnist"), Some((0.1307, 0.3081)));
        assert_eq!(fixed_statistics("kmnist"), Some((0.1918, 0.3483)));
        assert_eq!(fixed_statistics("cifar10"), Some((0.4734, 0.2516)));
        assert_eq!(fixed_statistics("cifar10_jpeg"), Some((0.4734, 0.2516)));
        assert_eq!(fixed_statistics("svhn"), Some((0.4514, 0.1993)));
        assert_eq!(fixed_statistics(RANDOM_DATASET), Some((0.0, 1.0)));
        for name in [
            "fashion_mnist",
            "emnist_balanced",
            "emnist_letters",
            "omniglot",
            "my_own",
        ] {
            assert_eq!(fixed_statistics(name), None, "{name}");
        }
    }

    #[test]
    fn native_sizes_come_from_the_catalogue_and_a_missing_entry_is_an_error() {
        let names = |s: &[&str]| s.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        assert_eq!(native_size(&names(&["mnist"])).unwrap(), (28, 28));
        assert_eq!(native_size(&names(&["cifar10"])).unwrap(), (32, 32));
        assert_eq!(native_size(&names(&["random"])).unwrap(), (28, 28));
        assert_eq!(
            native_size(&names(&["mnist", "fashion_mnist"])).unwrap(),
            (28, 28)
        );
        let err = native_size(&names(&["my_own"])).unwrap_err().to_string();
        assert!(
            err.contains("my_own") && err.contains("data.image_size"),
            "{err}"
        );
        let err = native_size(&names(&["mnist", "svhn"]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("svhn"), "{err}");
    }
}
