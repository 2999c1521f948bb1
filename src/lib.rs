//! gpicl: General-Purpose In-Context Learning in Rust.
//!
//! Meta-train black-box sequence models on randomly projected,
//! label-permuted image classification tasks until they learn in context,
//! then measure how they learn on tasks and datasets they never saw
//! (Kirsch et al., *General-Purpose In-Context Learning by Meta-Learning
//! Transformers*). This facade re-exports the workspace's crates, in
//! pipeline order:
//!
//! - [`kernels`]: devices, seeded RNG streams, differentiable ops;
//! - [`tasks`]: datasets, preprocessing, the task family, batches;
//! - [`models`]: the sequence-model trait and the Transformer;
//! - [`meta`]: Adam with eps_root, the training loop, checkpoints;
//! - [`eval`]: the evaluation protocol, baselines, reports and plots;
//! - [`run`]: runs — their config, training and evaluation composed,
//!   `predict`, sweeps.
//!
//! ```no_run
//! use gpicl::{run::evaluate::{evaluate_run, PeriodicEval}, run::RunConfig, meta::RunDir, tasks::DataRoots};
//! let roots = DataRoots::new(None); // GPICL_DATA_DIR, then the embedded data/
//! let dir = RunDir::new("runs/quickstart");
//! let cfg = RunConfig::quickstart(); // training, then the evaluation protocol
//! let mut trainer = cfg.open_trainer(dir.clone(), &roots, None).unwrap();
//! trainer.run(&mut PeriodicEval::new(roots.clone(), cfg.eval.clone())).unwrap();
//! println!("{}", evaluate_run(&dir, &roots, None, None).unwrap().table());
//! ```
#![warn(missing_docs)]

//! A shipped learner on data of one's own (`cargo xtask predict` is the
//! command-line face of the same API): the training rows are its context,
//! nothing is trained.
//!
//! ```
//! use gpicl::{Learner, PredictOptions};
//! let learner = Learner::load("models/gpicl-quickstart-7px".as_ref(), PredictOptions::default())?;
//! let x = vec![vec![0.0, 1.0, 0.2], vec![0.1, 0.9, 0.1], vec![1.0, 0.0, 0.9], vec![0.9, 0.2, 1.0]];
//! let fitted = learner.fit(&x, &[0, 0, 1, 1])?;
//! let p = fitted.predict_proba(&[vec![0.95, 0.1, 0.9]])?;
//! assert_eq!(p[0].len(), 2);
//! # Ok::<(), gpicl::run::RunError>(())
//! ```

pub use gpicl_eval as eval;
pub use gpicl_kernels as kernels;
pub use gpicl_meta as meta;
pub use gpicl_models as models;
pub use gpicl_run as run;
pub use gpicl_run::predict::{FittedLearner, Learner, PredictOptions};
pub use gpicl_tasks as tasks;
