//! Datasets, preprocessing and the GPICL task family.
//!
//! Pipeline position: this crate turns image files into meta-learning
//! batches. It depends on `gpicl-kernels` (seeded randomness, tensors) and
//! on no model. A *task* is a random linear projection of the inputs plus a
//! permutation of the labels, a pure function of `(task_seed, task_id)`
//! ([`task`]); a *batch* is many sequences of `[x_t, onehot(y_{t−1})]`
//! tokens ([`batch`]); the meta-training distribution over tasks, with its
//! biasing options, is [`sampler::TrainSampler`].
//!
//! Datasets are found by name ([`catalog`]) under the data roots
//! ([`dataset::DataRoots`]): an explicit folder, `GPICL_DATA_DIR`, gpicl's
//! cache ([`cache`], filled by [`hub::fetch`] from the Hugging Face Hub or
//! by [`import::import_dir`] from a local copy) and the embedded `data/`.
//! Datasets with more than 10 classes, and mixtures of datasets, are drawn
//! from per task ([`pool`]).
//!
//! ```
//! use gpicl_tasks::task::TaskFamily;
//! let family = TaskFamily::new(0, 196, 0.0);
//! // The same id always yields the same task, on any machine.
//! assert_eq!(family.projection(5), TaskFamily::new(0, 196, 0.0).projection(5));
//! assert!(TaskFamily::unseen_ids(32).iter().all(|id| *id < 0));
//! ```
#![warn(missing_docs)]

pub mod batch;
pub mod cache;
pub mod catalog;
pub mod config;
pub mod dataset;
pub mod error;
pub mod hub;
mod hub_files;
pub mod idx;
pub mod image_folder;
pub mod import;
pub mod import_user;
pub mod names;
pub mod own_data;
pub mod parquet_images;
pub mod pool;
pub mod sampler;
pub mod spec;
pub mod table;
pub mod table_features;
pub mod tabular;
pub mod task;

pub use batch::{
    Batch, BatchBuilder, ExampleSource, ExampleStream, FeatureStatistics, StreamState,
};
pub use config::{
    BatchConfig, ChannelPolicy, DataConfig, Echo, FeatureNormalization, Normalization,
    PermutationMask, ResizeMethod, TaskConfig,
};
pub use dataset::{DataRoots, ImageSet, Split, RANDOM_DATASET};
pub use error::{Result, TaskError};
pub use sampler::{SamplerState, TrainSampler};
pub use task::{TaskFamily, TaskRef};

/// Every task is a classification over this many labels.
pub const NUM_CLASSES: usize = 10;
