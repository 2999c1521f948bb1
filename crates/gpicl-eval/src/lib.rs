//! Evaluation: how well a sequence model learns in context.
//!
//! Pipeline position: on top of `models` and `tasks`, beside `meta` (which
//! it does not know; `gpicl-run` composes the two). It implements the
//! protocol of `gpicl-method.md` §7 ([`protocol`]): fixed batches from
//! each dataset's test split ([`sources`]), seen / unseen / identity task
//! groups with and without label permutation ([`group`]), accuracy and loss
//! at every position. Results become a table, JSON and SVG learning curves
//! ([`report`], [`plot`]). It also holds the learners that are not
//! meta-trained: the SGD baseline ([`baselines`]) and the classical
//! yardsticks ([`classical`], [`trees`]).
//!
//! ```no_run
//! use gpicl_eval::{sources::load_eval_sources, EvalConfig, Evaluator, Group};
//! use gpicl_kernels::Device;
//! use gpicl_tasks::{DataConfig, DataRoots, Normalization, FeatureNormalization, Split, TaskFamily};
//! let data = DataConfig::default();
//! let n_x = gpicl_tasks::dataset::feature_count(&data).unwrap();
//! let sources = load_eval_sources(&["mnist".into()], &DataRoots::new(None), &data, Split::Test, n_x).unwrap();
//! # let model: Box<dyn gpicl_models::SequenceModel> = todo!();
//! let family = TaskFamily::new(0, n_x, 0.0);
//! let evaluator = Evaluator {
//!     model: model.as_ref(), family: &family, num_tasks: 1 << 16,
//!     normalization: data.normalization, feature_normalization: data.feature_normalization,
//!     seq_len: 100, device: &Device::Cpu, progress: None,
//! };
//! let report = evaluator.evaluate(&sources, &Group::ALL, &EvalConfig::default(), 32, 0).unwrap();
//! println!("{}", report.table());
//! ```
#![warn(missing_docs)]

pub mod baselines;
pub mod classical;
pub mod config;
pub mod error;
pub mod group;
pub mod plot;
pub mod protocol;
pub mod report;
pub mod sources;
pub mod trees;

pub use config::EvalConfig;
pub use error::{EvalError, Result};
pub use protocol::{Evaluator, Group};
pub use report::{EvalReport, GroupResult};
