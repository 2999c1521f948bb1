//! Evaluation: how well a meta-trained model learns in context.
//!
//! Pipeline position: on top of `models`, `tasks` and `meta`. It implements
//! the protocol of `gpicl-method.md` §7 ([`protocol`]): fixed batches from
//! each dataset's test split, seen / unseen / identity task groups with and
//! without label permutation, accuracy and loss at every position. Results
//! become a table, JSON and SVG learning curves ([`report`], [`plot`]);
//! [`run`] evaluates a run directory after training or periodically during
//! it; [`sweep`] reads sweep files and summarises many runs (a sweep) as a
//! Markdown table with mean ± std over seeds and a plot against the swept
//! quantity; [`speedrun`] holds the fixed learner bar that `cargo xtask
//! speedrun` stops the clock at.
//!
//! ```no_run
//! use gpicl_eval::run::evaluate_run;
//! use gpicl_meta::RunDir;
//! use gpicl_tasks::DataRoots;
//! let report = evaluate_run(&RunDir::new("runs/example"), &DataRoots::new(None), None, None).unwrap();
//! println!("{}", report.table());
//! ```
#![warn(missing_docs)]

pub mod baselines;
pub mod classical;
pub mod config;
pub mod error;
pub mod group;
pub mod learner_check;
pub mod plot;
pub mod predict;
pub mod protocol;
pub mod report;
pub mod run;
pub mod speedrun;
pub mod sweep;
pub mod trees;

pub use config::{EvalConfig, RunConfig, RunLearner};
pub use error::{EvalError, Result};
pub use protocol::{Evaluator, Group};
pub use report::{EvalReport, GroupResult};
