//! Property tests for the readers of run files: safetensors checkpoints,
//! `config.toml` and `metrics.jsonl` (with the plateau detection that
//! reads it). Thousands of mutations of valid files: none may panic, and
//! none may allocate more than the file could hold.

use gpicl_kernels::{Device, Tensor};
use gpicl_meta::adam::Adam;
use gpicl_meta::checkpoint::{load_checkpoint, save_checkpoint, CheckpointMeta};
use gpicl_meta::plateau::{plateau_of_run, PlateauCriteria};
use gpicl_meta::{MetricsLog, OptimConfig, Optimizer, TrainConfig};
use gpicl_models::ParamStore;
use gpicl_tasks::{SamplerState, StreamState};
use gpicl_testing::fuzzing::{config, largest_allocation, mutate, mutations, PeakAlloc};
use proptest::prelude::*;
use std::path::PathBuf;

#[global_allocator]
static ALLOC: PeakAlloc = PeakAlloc;

const OVERHEAD: usize = 4 << 20;

/// A file in this binary's one scratch folder (thousands of cases share it).
fn scratch(name: &str) -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| gpicl_testing::scratch_dir("fuzz-meta"))
        .join(name)
}

/// A real checkpoint of two small parameters, written once: the tests of
/// this binary run in parallel, and two writers of one checkpoint folder
/// would clean up each other's partial files.
fn valid_checkpoint() -> Vec<u8> {
    static BYTES: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    BYTES.get_or_init(write_valid_checkpoint).clone()
}

fn write_valid_checkpoint() -> Vec<u8> {
    let mut params = ParamStore::new();
    let w: Vec<f32> = (0..24).map(|i| i as f32 * 0.5).collect();
    params
        .insert(
            "layer.weight",
            Tensor::from_vec(w, (4, 6), &Device::Cpu).unwrap(),
        )
        .unwrap();
    params
        .insert(
            "layer.bias",
            Tensor::zeros(6, gpicl_kernels::DType::F32, &Device::Cpu).unwrap(),
        )
        .unwrap();
    let adam = Adam::new(OptimConfig::default(), &params);
    let meta = CheckpointMeta {
        step: 7,
        input_dim: 14,
        sampler: SamplerState {
            rng: [1, 2, 3, 4],
            stream: StreamState {
                seed: 5,
                epoch: 0,
                cursor: 9,
                examples: 100,
            },
        },
        identity: Default::default(),
    };
    let path = save_checkpoint(
        &scratch("valid-checkpoint"),
        &params,
        &adam.state(),
        &meta,
        1,
    )
    .unwrap();
    std::fs::read(path).unwrap()
}

fn valid_metrics() -> Vec<u8> {
    let mut text = String::from(
        "{\"kind\":\"model\",\"step\":0,\"model\":\"transformer\",\"params\":10,\"state_size\":4,\"n_x\":2}\n",
    );
    for step in 1..=40 {
        let loss = if step < 20 { 2.3 } else { 1.0 };
        text.push_str(&format!(
            "{{\"kind\":\"train\",\"step\":{step},\"loss\":{loss},\"acc\":0.1,\"acc_last\":0.1,\"grad_norm\":1.0,\"lr\":0.001,\"seconds\":0.01}}\n"
        ));
    }
    text.push_str("{\"kind\":\"eval\",\"step\":40,\"dataset\":\"mnist\",\"group\":\"unseen\",\"acc_first\":0.1,\"acc_last\":0.5,\"loss_last\":2.0}\n");
    text.into_bytes()
}

#[test]
fn the_seed_files_are_valid() {
    let path = scratch("seed.safetensors");
    std::fs::write(&path, valid_checkpoint()).unwrap();
    assert_eq!(load_checkpoint(&path, &Device::Cpu).unwrap().meta.step, 7);
    let path = scratch("seed.toml");
    std::fs::write(&path, toml::to_string(&TrainConfig::quickstart()).unwrap()).unwrap();
    TrainConfig::load(&path).unwrap();
    let path = scratch("seed-metrics.jsonl");
    std::fs::write(&path, valid_metrics()).unwrap();
    assert_eq!(MetricsLog::open(&path).read().unwrap().len(), 42);
}

proptest! {
    #![proptest_config(config(1_500))]

    #[test]
    fn mutated_checkpoints_load_or_are_refused_naming_the_file(edits in mutations(4)) {
        let bytes = mutate(&valid_checkpoint(), &edits);
        let path = scratch("mutated.safetensors");
        std::fs::write(&path, &bytes).unwrap();
        let (result, peak) = largest_allocation(|| load_checkpoint(&path, &Device::Cpu));
        prop_assert!(peak <= 4 * bytes.len() + OVERHEAD, "{peak} bytes for {}", bytes.len());
        if let Err(e) = result {
            prop_assert!(e.to_string().contains("mutated.safetensors"), "{}", e);
        }
    }

    #[test]
    fn mutated_configs_load_or_are_refused_naming_the_file(edits in mutations(4)) {
        let seed = toml::to_string(&TrainConfig::quickstart()).unwrap();
        let bytes = mutate(seed.as_bytes(), &edits);
        let path = scratch("mutated-config.toml");
        std::fs::write(&path, &bytes).unwrap();
        let (result, peak) = largest_allocation(|| TrainConfig::load(&path));
        prop_assert!(peak <= 64 * bytes.len() + OVERHEAD, "{peak} bytes for {}", bytes.len());
        match result {
            // Whatever loads has passed validation and can be used.
            Ok(cfg) => prop_assert!(cfg.validate_options().is_ok()),
            Err(e) => prop_assert!(e.to_string().contains("mutated-config.toml"), "{}", e),
        }
    }

    #[test]
    fn mutated_metrics_logs_are_read_and_truncated_without_panicking(edits in mutations(6)) {
        let bytes = mutate(&valid_metrics(), &edits);
        let path = scratch("mutated-metrics.jsonl");
        std::fs::write(&path, &bytes).unwrap();
        let log = MetricsLog::open(&path);
        let criteria = PlateauCriteria::for_classes(10);
        let ((records, plateau), peak) =
            largest_allocation(|| (log.read(), plateau_of_run(&log, &criteria)));
        prop_assert!(peak <= 64 * bytes.len() + OVERHEAD, "{peak} bytes for {}", bytes.len());
        if let Err(e) = &records {
            prop_assert!(e.to_string().contains("mutated-metrics.jsonl"), "{}", e);
        }
        prop_assert_eq!(records.is_ok(), plateau.is_ok());
        // Resuming at step 10 keeps only intact records up to it, or
        // refuses a log damaged before its last line, naming it.
        match log.truncate_after(10) {
            Ok(()) => {
                let kept = log.read().unwrap();
                prop_assert!(kept.iter().all(|r| r.step() <= 10));
            }
            Err(e) => prop_assert!(e.to_string().contains("mutated-metrics.jsonl"), "{}", e),
        }
    }
}
