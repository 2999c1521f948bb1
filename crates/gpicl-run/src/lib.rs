//! Runs: training and evaluation composed, and what is done with a run.
//!
//! Pipeline position: on top of `gpicl-meta` (optimisation: the trainer,
//! checkpoints, metrics) and `gpicl-eval` (the evaluation protocol,
//! baselines, reports), which do not know each other; `xtask` is a thin
//! command line over this crate. It holds the run's `config.toml`
//! ([`RunConfig`]: the learner, its meta-training and its evaluation) and
//! opens or resumes a run with it, the evaluation of a run after training
//! and periodically during it ([`evaluate`]), the speedrun's fixed learner
//! bar ([`speedrun`]), per-position learning curves in TensorBoard
//! ([`curves`]), exporting a run as a learner to ship ([`export`]) with
//! the check it carries ([`learner_check`]), applying a learner to data of one's own
//! ([`predict`]) and sweeps over many runs ([`sweep`]).
//!
//! ```no_run
//! use gpicl_run::{evaluate::{evaluate_run, PeriodicEval}, RunConfig};
//! use gpicl_meta::RunDir;
//! use gpicl_tasks::DataRoots;
//! let roots = DataRoots::new(None);
//! let dir = RunDir::new("runs/example");
//! let cfg = RunConfig::quickstart();
//! let mut trainer = cfg.open_trainer(dir.clone(), &roots, None).unwrap();
//! trainer.run(&mut PeriodicEval::new(roots.clone(), cfg.eval.clone())).unwrap();
//! println!("{}", evaluate_run(&dir, &roots, None, None).unwrap().table());
//! ```
#![warn(missing_docs)]

pub mod config;
pub mod curves;
pub mod error;
pub mod evaluate;
pub mod export;
pub mod learner_check;
pub mod predict;
pub mod speedrun;
pub mod sweep;

pub use config::{RunConfig, RunLearner};
pub use error::{Result, RunError};
