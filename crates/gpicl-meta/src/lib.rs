//! Meta-optimisation: turning a sequence model into an in-context learner.
//!
//! Pipeline position: `kernels ← models ← meta`, with `tasks` supplying the
//! training distribution. A [`Trainer`] owns a model, an [`Optimizer`]
//! ([`adam::Adam`] with `eps_root`), the training sampler and a run directory
//! ([`RunDir`]) holding `config.toml`, `metrics.jsonl` and safetensors
//! checkpoints; it resumes from the newest checkpoint bit for bit.
//!
//! ```no_run
//! use gpicl_meta::{RunDir, Silent, TrainConfig, Trainer};
//! use gpicl_tasks::DataRoots;
//! let mut cfg = TrainConfig::quickstart();
//! cfg.schedule.steps = 10;
//! let mut trainer = Trainer::open(cfg, RunDir::new("runs/example"), &DataRoots::new(None)).unwrap();
//! trainer.run(&mut Silent).unwrap();
//! ```
#![warn(missing_docs)]

pub mod bench;
pub mod checkpoint;
pub mod config;
pub mod error;
pub mod export;
mod identity;
pub mod loaded_run;
pub mod lock;
pub mod lr_schedule;
pub mod metrics;
pub mod optim;
pub use optim::adam;
pub mod plateau;
pub mod record;
pub mod run_dir;
pub mod tensorboard;
pub mod trainer;

pub use config::{LrDecay, OptimConfig, Precision, ScheduleConfig, TrainConfig};
pub use error::{MetaError, Result};
pub use export::export_learner;
pub use loaded_run::{load_run, LoadedRun};
pub use lock::RunLock;
pub use metrics::{MetricSink, MetricsLog};
pub use optim::{build_optimizer, Gradients, Optimizer, OptimizerState};
pub use record::{read_records, EvalRecord, ModelRecord, RunRecord, TrainRecord};
pub use run_dir::RunDir;
pub use trainer::{Observer, Silent, SkippedCheckpoint, Trainer};
