//! The Python reference steps `cargo xtask bench` compares against: the
//! shapes that have one ([`BenchPreset`]), which script times the same
//! model as a config, with which arguments, and how to read its result.
//!
//! Transformers run `../shared/refs/torch_step.py` at the config's shape;
//! the LSTM and the outer-product LSTM (with their input encoder, which
//! `torch_step.py --model lstm` lacks) run this project's
//! `xtask/refs/recurrent_step.py`. Every script prints the model's
//! parameter count (`params=N`) and a final `MEDIAN … <x> ms` line.

use anyhow::{bail, Context, Result};
use clap::ValueEnum;
use gpicl::meta::TrainConfig;
use gpicl::models::ModelKind;
use std::path::{Path, PathBuf};
use std::process::Command;

/// One run of a reference script: the interpreter's arguments.
#[derive(Clone, Debug, PartialEq)]
pub struct ReferenceStep {
    /// The script.
    pub script: PathBuf,
    /// Shape arguments (steps, warm-up and threads are added per run).
    pub args: Vec<String>,
}

/// What one run of a reference script reported.
#[derive(Clone, Debug, PartialEq)]
pub struct ReferenceTiming {
    /// Median step in milliseconds.
    pub median_ms: f64,
    /// The model's parameter count as the script printed it.
    pub params: Option<usize>,
}

/// The folder of the project's own reference scripts.
pub fn project_refs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("refs")
}

/// The PyTorch step of the model and batch of `cfg` with `n_x` input
/// features (before the 10 label values), or why there is none.
pub fn pytorch_step(cfg: &TrainConfig, n_x: usize, refs_dir: &Path) -> Result<ReferenceStep> {
    let (m, t) = (&cfg.model, &cfg.model.transformer);
    let batch = [
        "--din".to_string(),
        n_x.to_string(),
        "--batch".to_string(),
        cfg.batch.sequences().to_string(),
        "--seq-len".to_string(),
        cfg.batch.seq_len.to_string(),
    ];
    let (script, mut args) = match m.kind {
        ModelKind::Transformer => {
            if t.gelu_tanh {
                bail!("torch_step.py uses the exact (erf) GELU: add --set model.gelu_tanh=false to compare the same model");
            }
            (
                refs_dir.join("torch_step.py"),
                vec![
                    "--d-model".to_string(),
                    t.d_model.to_string(),
                    "--layers".to_string(),
                    t.num_layers.to_string(),
                    "--heads".to_string(),
                    t.num_heads.to_string(),
                    "--key-size".to_string(),
                    t.key_size.to_string(),
                    "--mlp".to_string(),
                    (t.d_model * t.widening_factor).to_string(),
                ],
            )
        }
        ModelKind::Lstm => (
            project_refs_dir().join("recurrent_step.py"),
            vec![
                "--model".to_string(),
                "lstm".to_string(),
                "--hidden".to_string(),
                m.lstm.hidden.to_string(),
            ],
        ),
        ModelKind::OuterLstm => (
            project_refs_dir().join("recurrent_step.py"),
            vec![
                "--model".to_string(),
                "outer-lstm".to_string(),
                "--hidden".to_string(),
                m.outer_lstm.head_size.to_string(),
                "--heads".to_string(),
                m.outer_lstm.heads.to_string(),
            ],
        ),
        ModelKind::Vsml => (
            project_refs_dir().join("recurrent_step.py"),
            vec![
                "--model".to_string(),
                "vsml".to_string(),
                "--hidden".to_string(),
                m.vsml.hidden.to_string(),
                "--msg".to_string(),
                m.vsml.msg_size.to_string(),
                "--ticks".to_string(),
                m.vsml.micro_ticks.to_string(),
            ],
        ),
        other => bail!("no PyTorch reference step for model kind `{other}` (transformer, lstm, outer-lstm and vsml have one)"),
    };
    args.extend(batch);
    Ok(ReferenceStep { script, args })
}

/// Runs `step` once with `python` and returns what it reported.
pub fn run_reference(
    python: &Path,
    step: &ReferenceStep,
    extra: &[&str],
    steps: usize,
    warmup: usize,
    threads: usize,
) -> Result<ReferenceTiming> {
    if !step.script.is_file() {
        bail!("{} not found (set --refs-dir)", step.script.display());
    }
    let is_jax = step.script.file_name().is_some_and(|n| n == "jax_step.py");
    let mut cmd = Command::new(python);
    cmd.arg(&step.script).args(&step.args).args(extra).args([
        "--steps",
        &steps.to_string(),
        "--warmup",
        &warmup.to_string(),
    ]);
    if !is_jax {
        cmd.args(["--threads", &threads.to_string()]);
    }
    let out = cmd
        .output()
        .with_context(|| format!("cannot start {}", python.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(3).collect();
        bail!(
            "{} {} failed ({}): {}",
            python.display(),
            step.script.display(),
            out.status,
            tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
        );
    }
    let median_ms = parse_median(&stdout)
        .with_context(|| format!("{} printed no `MEDIAN … ms` line", step.script.display()))?;
    Ok(ReferenceTiming {
        median_ms,
        params: parse_params(&stdout),
    })
}

/// The milliseconds of the reference scripts' final `MEDIAN … <x> ms over
/// <n> steps` line.
pub fn parse_median(stdout: &str) -> Option<f64> {
    let line = stdout.lines().rev().find(|l| l.starts_with("MEDIAN"))?;
    let words: Vec<&str> = line.split_whitespace().collect();
    let ms = words.iter().position(|w| *w == "ms")?;
    words.get(ms.checked_sub(1)?)?.parse().ok()
}

/// The `params=N` the scripts print on their first line.
pub fn parse_params(stdout: &str) -> Option<usize> {
    stdout
        .split_whitespace()
        .find_map(|w| w.strip_prefix("params="))?
        .parse()
        .ok()
}

/// The median of `xs` (NaN when empty).
pub fn median(xs: &[f64]) -> f64 {
    let mut xs = xs.to_vec();
    xs.sort_by(f64::total_cmp);
    match xs.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => xs[n / 2],
        n => (xs[n / 2 - 1] + xs[n / 2]) / 2.0,
    }
}

/// Benchmark shapes with a counterpart in `../shared/refs`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BenchPreset {
    /// The paper's reference run (d_model 512, 16×32 sequences).
    Paper,
    /// `torch_step.py` / `jax_step.py`: pre-LN Transformer d_model 256,
    /// 4 layers, 8 heads of 32, MLP 1024 with erf GELU, 784+10 inputs,
    /// 32 sequences of 100, AdamW lr 1e-3 wd 0, clip 1.0.
    Reference,
    /// `torch_step.py --model lstm`: LSTM 794→256 and a 10-way head, same
    /// batch and optimiser.
    ReferenceLstm,
}

/// The config of a preset.
pub fn preset_config(preset: BenchPreset) -> TrainConfig {
    let mut cfg = TrainConfig::paper();
    if preset == BenchPreset::Paper {
        return cfg;
    }
    cfg.model.transformer.d_model = 256;
    cfg.model.transformer.num_layers = 4;
    cfg.model.transformer.num_heads = 8;
    cfg.model.transformer.key_size = 32;
    cfg.model.transformer.widening_factor = 4;
    cfg.model.transformer.gelu_tanh = false;
    cfg.model.set_hidden(256);
    if preset == BenchPreset::ReferenceLstm {
        cfg.model.kind = ModelKind::Lstm;
    }
    cfg.data.image_size = 28;
    cfg.batch.tasks_per_step = 1;
    cfg.batch.seqs_per_task = 32;
    cfg.batch.seq_len = 100;
    cfg.optim.lr = 1e-3;
    cfg.optim.beta1 = 0.9;
    cfg.optim.beta2 = 0.999;
    cfg.optim.eps = 1e-8;
    cfg.optim.eps_root = 0.0;
    cfg.optim.weight_decay = 0.0;
    cfg.optim.clip_norm = 1.0;
    cfg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_scripts_median_and_parameter_count_are_parsed() {
        let out = "torch 2.5 threads=2 model=tf params=3391242 shape=B32\nstep 0 loss 2.3 300.0 ms\nMEDIAN torch model=tf sdpa=False compile=False bf16=False 305.4 ms over 20 steps\n";
        assert_eq!(parse_median(out), Some(305.4));
        assert_eq!(parse_params(out), Some(3_391_242));
        assert_eq!(
            parse_median("MEDIAN jax bf16=False 780.0 ms over 20 steps"),
            Some(780.0)
        );
        assert_eq!(parse_median("step 0 loss 2.3 300.0 ms"), None);
        assert_eq!(parse_params("step 0 loss 2.3 300.0 ms"), None);
        assert_eq!(median(&[3.0, 1.0, 2.0, 10.0]), 2.5);
    }

    #[test]
    fn every_shape_reaches_the_reference_script_of_its_model() {
        let refs = Path::new("refs");
        let mut cfg = TrainConfig::paper();
        cfg.model.transformer.gelu_tanh = false;
        cfg.model.transformer.d_model = 64;
        cfg.model.transformer.num_layers = 2;
        cfg.model.transformer.num_heads = 4;
        cfg.model.transformer.key_size = 16;
        cfg.batch.tasks_per_step = 2;
        cfg.batch.seqs_per_task = 32;
        cfg.batch.seq_len = 100;
        let tf = pytorch_step(&cfg, 49, refs).unwrap();
        assert_eq!(tf.script, refs.join("torch_step.py"));
        assert_eq!(
            tf.args.join(" "),
            "--d-model 64 --layers 2 --heads 4 --key-size 16 --mlp 256 --din 49 --batch 64 --seq-len 100"
        );
        cfg.model.transformer.gelu_tanh = true;
        let refused = pytorch_step(&cfg, 49, refs).unwrap_err().to_string();
        assert!(refused.contains("gelu_tanh=false"), "{refused}");

        cfg.model.kind = ModelKind::Lstm;
        cfg.model.set_hidden(256);
        let lstm = pytorch_step(&cfg, 784, refs).unwrap();
        assert!(lstm.script.ends_with("refs/recurrent_step.py") && lstm.script.is_file());
        assert!(lstm
            .args
            .join(" ")
            .starts_with("--model lstm --hidden 256 --din 784"));

        cfg.model.kind = ModelKind::OuterLstm;
        cfg.model.outer_lstm.heads = 2;
        let outer = pytorch_step(&cfg, 196, refs).unwrap();
        assert_eq!(outer.script, lstm.script);
        assert!(outer
            .args
            .join(" ")
            .starts_with("--model outer-lstm --hidden 256 --heads 2 --din 196"));

        cfg.model.kind = ModelKind::Vsml;
        let vsml = pytorch_step(&cfg, 49, refs).unwrap();
        assert_eq!(vsml.script, lstm.script);
        assert!(vsml
            .args
            .join(" ")
            .starts_with("--model vsml --hidden 16 --msg 8 --ticks 2 --din 49"));

        cfg.model.kind = ModelKind::Mlp;
        assert!(pytorch_step(&cfg, 196, refs).is_err());
    }
}
