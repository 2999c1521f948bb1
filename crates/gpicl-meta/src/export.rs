//! Exporting a trained run as a learner to ship: its `config.toml` and its
//! newest weights, without optimiser state, in the layout of a run
//! directory, so `eval-ood --run` (and `load_run`) read it like any run.

use crate::checkpoint::{list_checkpoints, load_checkpoint, save_weights};
use crate::error::{MetaError, Result};
use crate::loaded_run::load_run;
use crate::run_dir::RunDir;
use gpicl_kernels::Device;
use std::path::PathBuf;

/// Writes `to/config.toml` and `to/checkpoints/step-N.safetensors` (weights
/// only) from the newest checkpoint of `from`; returns the weights' path.
/// Refuses to overwrite a folder that already holds checkpoints.
pub fn export_learner(from: &RunDir, to: &RunDir) -> Result<PathBuf> {
    let (_, newest) =
        list_checkpoints(&from.checkpoints())
            .pop()
            .ok_or_else(|| MetaError::Corrupt {
                path: from.checkpoints(),
                reason: "no checkpoint to export: train the run first".into(),
            })?;
    if !list_checkpoints(&to.checkpoints()).is_empty() {
        return Err(MetaError::Corrupt {
            path: to.checkpoints(),
            reason: "already holds checkpoints; export into an empty folder".into(),
        });
    }
    // Rebuilding the model checks that config and weights belong together.
    let run = load_run(from, &Device::Cpu)?;
    let ckpt = load_checkpoint(&newest, &Device::Cpu)?;
    std::fs::create_dir_all(to.root()).map_err(MetaError::io(to.root()))?;
    std::fs::copy(from.config(), to.config()).map_err(MetaError::io(&to.config()))?;
    save_weights(
        &to.checkpoints(),
        run.model.params(),
        &ckpt.meta,
        ckpt.optimizer.step,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Silent, TrainConfig, Trainer};
    use gpicl_tasks::{dataset::embedded_data_dir, DataRoots};

    #[test]
    fn an_exported_learner_predicts_like_its_run_but_cannot_be_resumed() {
        let root = gpicl_testing::scratch_dir("export");
        let mut cfg = TrainConfig::small();
        cfg.model.transformer.d_model = 16;
        cfg.model.transformer.num_layers = 1;
        cfg.data.image_size = 7;
        cfg.batch.tasks_per_step = 2;
        cfg.batch.seqs_per_task = 2;
        cfg.batch.seq_len = 10;
        cfg.schedule.steps = 3;
        cfg.schedule.eval_every = 0;
        let (run, shipped) = (
            RunDir::new(root.join("run")),
            RunDir::new(root.join("shipped")),
        );
        let roots = DataRoots::only(vec![embedded_data_dir()]);
        Trainer::open(cfg, run.clone(), &roots)
            .unwrap()
            .run(&mut Silent)
            .unwrap();
        let weights = export_learner(&run, &shipped).unwrap();
        let full = std::fs::metadata(&list_checkpoints(&run.checkpoints())[0].1)
            .unwrap()
            .len();
        let slim = std::fs::metadata(&weights).unwrap().len();
        assert!(slim * 2 < full, "weights only: {slim} vs {full} bytes");
        let (a, b) = (
            load_run(&run, &Device::Cpu).unwrap(),
            load_run(&shipped, &Device::Cpu).unwrap(),
        );
        assert_eq!(b.step, 3);
        let inputs =
            gpicl_kernels::Tensor::zeros((1, 10, b.n_x), gpicl_kernels::DType::F32, &Device::Cpu)
                .unwrap();
        let labels =
            gpicl_kernels::Tensor::zeros((1, 10), gpicl_kernels::DType::U32, &Device::Cpu).unwrap();
        let (la, lb): (Vec<f32>, Vec<f32>) = (
            a.model
                .forward(&inputs, &labels)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap(),
            b.model
                .forward(&inputs, &labels)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap(),
        );
        assert_eq!(la, lb);
        let err = Trainer::open(
            TrainConfig::load(&shipped.config()).unwrap(),
            shipped.clone(),
            &roots,
        )
        .err()
        .expect("an exported learner has no optimiser state")
        .to_string();
        assert!(err.contains("cannot be resumed"), "{err}");
        assert!(export_learner(&run, &shipped).is_err(), "no overwrite");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
