//! `cargo xtask bench --suite`: every shape the science uses, timed against
//! PyTorch in one invocation with alternating rounds, written as a Markdown
//! table and JSON (with the CPU model and its SIMD flags) for
//! `docs/benchmarks.md`.

use crate::bench_refs::{
    median, preset_config, pytorch_step, run_reference, BenchPreset, ReferenceStep,
};
use crate::cpu::{cpu_info, fma_peak, CpuInfo, FmaPeak};
use anyhow::{Context, Result};
use gpicl::kernels::KernelOptions;
use gpicl::meta::bench::{bench_training_step, teacher_losses, BenchReport};
use gpicl::meta::{Precision, TrainConfig};
use gpicl::models::ModelKind;
use gpicl::tasks::dataset::feature_count;
use serde::Serialize;
use std::fmt::Write as _;
use std::path::Path;

/// One shape of the suite.
pub struct SuiteShape {
    /// Short name used in the table.
    pub name: &'static str,
    /// The model and batch.
    pub cfg: TrainConfig,
    /// Whether the bf16 steps (gpicl's and PyTorch's autocast) are timed too.
    pub bf16_reference: bool,
    /// Whether the bf16 quality check runs at this shape.
    pub bf16_quality: bool,
    /// Most timed steps per round (the slow outer-product LSTM takes fewer).
    pub max_steps: usize,
    /// The ratio gpicl / PyTorch fp32 the issue asks for.
    pub target_ratio: Option<f64>,
}

fn transformer(
    d_model: usize,
    layers: usize,
    heads: usize,
    key_size: usize,
    image: usize,
    seqs: usize,
) -> TrainConfig {
    let mut cfg = preset_config(BenchPreset::Reference);
    cfg.model.transformer.d_model = d_model;
    cfg.model.transformer.num_layers = layers;
    cfg.model.transformer.num_heads = heads;
    cfg.model.transformer.key_size = key_size;
    cfg.model.transformer.widening_factor = 4;
    cfg.data.image_size = image;
    cfg.batch.seqs_per_task = seqs;
    cfg
}

fn vsml(image: usize) -> TrainConfig {
    let mut cfg = preset_config(BenchPreset::Reference);
    cfg.model.kind = ModelKind::Vsml;
    cfg.data.image_size = image;
    cfg.batch.tasks_per_step = 1;
    cfg.batch.seqs_per_task = 8;
    cfg
}

fn outer_lstm(hidden: usize) -> TrainConfig {
    let mut cfg = preset_config(BenchPreset::Reference);
    cfg.model.kind = ModelKind::OuterLstm;
    cfg.model.set_hidden(hidden);
    cfg.model.outer_lstm.heads = 1;
    cfg.data.image_size = 14;
    cfg
}

/// The shapes of the suite: the four Transformer shapes of the issue that
/// set the CPU targets, the reference LSTM, the outer-product LSTM at
/// H = 64 and H = 256 (14×14 inputs, 32 sequences of 100) and VSML with the
/// authors' sizes (7×7 inputs, 8 sequences of 100).
pub fn suite_shapes() -> Vec<SuiteShape> {
    // (bf16 timed, bf16 quality checked): the issue sets its bf16 targets
    // at the reference and paper-d64 shapes.
    let shape = |name, cfg, (bf16_reference, bf16_quality), max_steps, target_ratio| SuiteShape {
        name,
        cfg,
        bf16_reference,
        bf16_quality,
        max_steps,
        target_ratio,
    };
    const BF16_CHECKED: (bool, bool) = (true, true);
    const BF16_TIMED: (bool, bool) = (true, false);
    const F32_ONLY: (bool, bool) = (false, false);
    vec![
        shape(
            "reference d256 L4 8×32 784px b32",
            preset_config(BenchPreset::Reference),
            BF16_CHECKED,
            usize::MAX,
            Some(0.8),
        ),
        shape(
            "quickstart d64 L2 4×16 7×7 b64",
            transformer(64, 2, 4, 16, 7, 64),
            F32_ONLY,
            usize::MAX,
            Some(0.8),
        ),
        shape(
            "paper-d64 d64 L4 8×32 7×7 b64",
            transformer(64, 4, 8, 32, 7, 64),
            BF16_CHECKED,
            usize::MAX,
            Some(0.8),
        ),
        shape(
            "d128 L4 8×32 14×14 b128",
            transformer(128, 4, 8, 32, 14, 128),
            BF16_TIMED,
            usize::MAX,
            Some(0.8),
        ),
        shape(
            "LSTM 794→256 b32",
            preset_config(BenchPreset::ReferenceLstm),
            F32_ONLY,
            usize::MAX,
            Some(0.8),
        ),
        shape(
            "outer-LSTM H=64 14×14 b32",
            outer_lstm(64),
            F32_ONLY,
            usize::MAX,
            None,
        ),
        shape(
            "outer-LSTM H=256 14×14 b32",
            outer_lstm(256),
            F32_ONLY,
            3,
            Some(2.0),
        ),
        shape("VSML m8 H16 7×7 b8", vsml(7), F32_ONLY, 5, None),
    ]
}

/// One row of the suite's table.
#[derive(Clone, Debug, Serialize)]
pub struct SuiteRow {
    /// The shape's name.
    pub shape: String,
    /// Parameters of our model.
    pub params: usize,
    /// Parameters of the PyTorch model (equal when the models match).
    pub pytorch_params: Option<usize>,
    /// Median over rounds of gpicl's per-round median step (ms).
    pub gpicl_ms: f64,
    /// Median over rounds of PyTorch fp32's median step (ms).
    pub pytorch_ms: Option<f64>,
    /// `gpicl_ms / pytorch_ms`.
    pub ratio: Option<f64>,
    /// The target of that ratio.
    pub target_ratio: Option<f64>,
    /// PyTorch bf16 autocast's median step (ms), where timed.
    pub pytorch_bf16_ms: Option<f64>,
    /// gpicl's `precision = "bf16"` median step (ms), where timed.
    pub gpicl_bf16_ms: Option<f64>,
    /// `gpicl_bf16_ms / pytorch_bf16_ms`.
    pub bf16_ratio: Option<f64>,
    /// Every round's medians: gpicl, PyTorch fp32, PyTorch bf16, gpicl bf16.
    pub rounds: Vec<[Option<f64>; 4]>,
    /// The bf16 quality check, where run.
    pub bf16_quality: Option<Bf16Quality>,
    /// gpicl's last round in full (forward, backward, optimiser, GFLOP/s).
    pub gpicl_last: BenchReport,
    /// Why a reference could not be run.
    pub errors: Vec<String>,
}

/// What the rounds of one shape measured.
#[derive(Default)]
struct Measured {
    /// Per round: gpicl, PyTorch fp32, PyTorch bf16, gpicl bf16 (ms).
    rounds: Vec<[Option<f64>; 4]>,
    pytorch_params: Option<usize>,
    /// gpicl's last round in full.
    last: Option<BenchReport>,
    /// Why a reference could not be run (first round).
    errors: Vec<String>,
}

impl SuiteRow {
    /// The row of `shape`: medians over the rounds and their ratios.
    fn new(shape: &SuiteShape, m: Measured, bf16_quality: Option<Bf16Quality>) -> Self {
        let column = |c: usize| {
            let xs: Vec<f64> = m.rounds.iter().filter_map(|r| r[c]).collect();
            (!xs.is_empty()).then(|| median(&xs))
        };
        let gpicl_ms = column(0).unwrap_or(f64::NAN);
        let (pytorch_ms, pytorch_bf16_ms, gpicl_bf16_ms) = (column(1), column(2), column(3));
        let gpicl_last = m.last.expect("every shape ran at least one round");
        SuiteRow {
            shape: shape.name.to_string(),
            params: gpicl_last.params,
            pytorch_params: m.pytorch_params,
            gpicl_ms,
            pytorch_ms,
            ratio: pytorch_ms.map(|p| gpicl_ms / p),
            target_ratio: shape.target_ratio,
            pytorch_bf16_ms,
            gpicl_bf16_ms,
            bf16_ratio: gpicl_bf16_ms.zip(pytorch_bf16_ms).map(|(g, p)| g / p),
            rounds: m.rounds,
            bf16_quality,
            gpicl_last,
            errors: m.errors,
        }
    }
}

/// The quality check of `precision = "bf16"`: the same training steps on
/// the same batches (fresh each step, labelled by a fixed random teacher)
/// in both precisions.
#[derive(Clone, Debug, Serialize)]
pub struct Bf16Quality {
    /// Training steps run in each precision.
    pub steps: usize,
    /// Mean loss of the last 50 steps in f32.
    pub f32_mean_loss: f64,
    /// Mean loss of the last 50 steps in bf16.
    pub bf16_mean_loss: f64,
    /// `|bf16 − f32| / f32`; the target is ≤ 0.02.
    pub relative_difference: f64,
}

/// Runs the quality check of `cfg`'s shape over `steps` steps, with
/// `kernels` (the precision is each run's).
pub fn bf16_quality(
    cfg: &TrainConfig,
    kernels: KernelOptions,
    n_x: usize,
    steps: usize,
) -> Result<Bf16Quality> {
    let tail_mean = |precision| -> Result<f64> {
        let mut c = cfg.clone();
        c.precision = precision;
        let losses = teacher_losses(&c, kernels, n_x, steps)?;
        let tail = &losses[losses.len().saturating_sub(50)..];
        Ok(tail.iter().map(|&l| l as f64).sum::<f64>() / tail.len().max(1) as f64)
    };
    let f32_mean_loss = tail_mean(Precision::F32)?;
    let bf16_mean_loss = tail_mean(Precision::Bf16)?;
    Ok(Bf16Quality {
        steps,
        f32_mean_loss,
        bf16_mean_loss,
        relative_difference: (bf16_mean_loss - f32_mean_loss).abs() / f32_mean_loss,
    })
}

/// Everything one suite invocation measured.
#[derive(Clone, Debug, Serialize)]
pub struct SuiteReport {
    /// The CPU.
    pub cpu: CpuInfo,
    /// `git describe --always --dirty` of the measured tree.
    pub commit: String,
    /// Threads given to PyTorch.
    pub python_threads: usize,
    /// Alternating rounds.
    pub rounds: usize,
    /// Timed steps per round (fewer for the slowest shapes).
    pub steps: usize,
    /// One row per shape.
    pub rows: Vec<SuiteRow>,
    /// The FMA peak each shape's GFLOP/s is a fraction of (none when the
    /// CPU's clock is unknown).
    pub peak: Option<FmaPeak>,
    /// Why no bf16 step was timed (gpicl's nor PyTorch's autocast), when
    /// the CPU has no native bf16 products: PyTorch would emulate them at
    /// many times its fp32 cost, which says nothing about either library.
    pub bf16_skipped: Option<String>,
}

/// The PyTorch reference variants timed at a shape: fp32 always, bf16
/// autocast too where the shape times bf16 and the CPU multiplies bf16
/// natively (`native`: `gpicl::kernels::bf16::support()`).
fn reference_variants(
    shape_times_bf16: bool,
    native: &Result<(), String>,
) -> &'static [&'static [&'static str]] {
    if shape_times_bf16 && native.is_ok() {
        &[&[], &["--bf16"]]
    } else {
        &[&[]]
    }
}

/// Options of one suite invocation.
pub struct SuiteOptions<'a> {
    pub python: Option<&'a Path>,
    pub refs_dir: &'a Path,
    pub rounds: usize,
    pub steps: usize,
    pub warmup: usize,
    pub threads: usize,
    pub out: &'a Path,
    /// Training steps of the bf16 quality check (0: not run).
    pub quality_steps: usize,
    /// Which kernels gpicl's steps run (the precision is each shape's).
    pub kernels: KernelOptions,
}

/// Runs the suite and writes `suite.md` and `suite.json` into `opts.out`.
pub fn run_suite(opts: &SuiteOptions) -> Result<SuiteReport> {
    let shapes = suite_shapes();
    let steps_of = |s: &SuiteShape| opts.steps.min(s.max_steps).max(1);
    let warmup_of = |s: &SuiteShape| opts.warmup.min(s.max_steps).max(1);
    let n_x = |cfg: &TrainConfig| feature_count(&cfg.data);
    let references: Vec<Option<ReferenceStep>> = shapes
        .iter()
        .map(|s| {
            n_x(&s.cfg)
                .ok()
                .and_then(|n| pytorch_step(&s.cfg, n, opts.refs_dir).ok())
        })
        .collect();
    let mut measured: Vec<Measured> = shapes.iter().map(|_| Measured::default()).collect();
    let native_bf16 = gpicl::kernels::bf16::support();
    if let Err(reason) = &native_bf16 {
        errln!("bf16 steps not timed: {reason}; PyTorch's bf16 autocast would be emulated here");
    }
    for round in 0..opts.rounds.max(1) {
        for ((shape, reference), m) in shapes.iter().zip(&references).zip(&mut measured) {
            let (steps, warmup) = (steps_of(shape), warmup_of(shape));
            let ours =
                bench_training_step(&shape.cfg, opts.kernels, n_x(&shape.cfg)?, steps, warmup)
                    .with_context(|| format!("gpicl at shape {}", shape.name))?;
            errln!(
                "round {round} {}: gpicl {:.1} ms",
                shape.name,
                ours.median_ms
            );
            let mut timed = [Some(ours.median_ms), None, None, None];
            if shape.bf16_reference && native_bf16.is_ok() {
                let mut bf16 = shape.cfg.clone();
                bf16.precision = Precision::Bf16;
                let r = bench_training_step(&bf16, opts.kernels, n_x(&bf16)?, steps, warmup)
                    .with_context(|| format!("gpicl bf16 at shape {}", shape.name))?;
                errln!(
                    "round {round} {}: gpicl bf16 {:.1} ms",
                    shape.name,
                    r.median_ms
                );
                timed[3] = Some(r.median_ms);
            }
            if let (Some(python), Some(step)) = (opts.python, reference) {
                let variants = reference_variants(shape.bf16_reference, &native_bf16);
                for (v, extra) in variants.iter().enumerate() {
                    match run_reference(python, step, extra, steps, warmup, opts.threads) {
                        Ok(r) => {
                            errln!(
                                "round {round} {}: pytorch{} {:.1} ms",
                                shape.name,
                                extra.join(""),
                                r.median_ms
                            );
                            timed[1 + v] = Some(r.median_ms);
                            m.pytorch_params = m.pytorch_params.or(r.params);
                        }
                        Err(e) if round == 0 => m.errors.push(format!("{e:#}")),
                        Err(e) => errln!("{}: {e:#}", shape.name),
                    }
                }
            }
            m.rounds.push(timed);
            m.last = Some(ours);
        }
    }
    let mut rows = Vec::with_capacity(shapes.len());
    for (shape, m) in shapes.iter().zip(measured) {
        let quality = if opts.quality_steps > 0
            && shape.bf16_quality
            && gpicl::kernels::bf16::support().is_ok()
        {
            let q = bf16_quality(
                &shape.cfg,
                opts.kernels,
                n_x(&shape.cfg)?,
                opts.quality_steps,
            )?;
            errln!(
                "{}: bf16 quality over {} steps: f32 {:.4}, bf16 {:.4} ({:.2} %)",
                shape.name,
                q.steps,
                q.f32_mean_loss,
                q.bf16_mean_loss,
                100.0 * q.relative_difference
            );
            Some(q)
        } else {
            None
        };
        rows.push(SuiteRow::new(shape, m, quality));
    }
    let cpu = cpu_info();
    let report = SuiteReport {
        peak: fma_peak(&cpu),
        cpu,
        commit: git_describe(),
        python_threads: opts.threads,
        rounds: opts.rounds.max(1),
        steps: opts.steps,
        rows,
        bf16_skipped: native_bf16.err(),
    };
    std::fs::create_dir_all(opts.out)
        .with_context(|| format!("cannot create {}", opts.out.display()))?;
    let json = opts.out.join("suite.json");
    std::fs::write(&json, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("cannot write {}", json.display()))?;
    let md = opts.out.join("suite.md");
    std::fs::write(&md, markdown(&report))
        .with_context(|| format!("cannot write {}", md.display()))?;
    Ok(report)
}

fn git_describe() -> String {
    std::process::Command::new("git")
        .args(["describe", "--always", "--dirty"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or("unknown".to_string(), |o| {
            String::from_utf8_lossy(&o.stdout).trim().to_string()
        })
}

fn ms(x: Option<f64>) -> String {
    x.map_or("–".to_string(), |v| format!("{v:.1}"))
}

/// The suite's table in Markdown, with the machine it ran on.
pub fn markdown(r: &SuiteReport) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "CPU: {} ({} threads; {}), commit {}, PyTorch on {} threads, {} alternating rounds, medians of ≤ {} steps.\n",
        r.cpu.model,
        r.cpu.threads,
        r.cpu.flags.join(" "),
        r.commit,
        r.python_threads,
        r.rounds,
        r.steps
    );
    if let Some(peak) = &r.peak {
        let _ = writeln!(s, "{}.\n", peak.describe());
    }
    s.push_str("| shape (fwd+bwd+Adam, 100 tokens per sequence) | params | gpicl ms | fwd / bwd / opt ms | GFLOP/s | of FMA peak | PyTorch fp32 ms | gpicl / PyTorch | target | gpicl bf16 ms | PyTorch bf16 ms | bf16 ratio (target ≤ 1.0×) |\n");
    s.push_str("|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for row in &r.rows {
        let params = match row.pytorch_params {
            Some(p) if p != row.params => format!("{} (PyTorch {p})", row.params),
            _ => row.params.to_string(),
        };
        let verdict = match (row.ratio, row.target_ratio) {
            (Some(ratio), Some(t)) => {
                format!("≤ {t:.1}× {}", if ratio <= t { "met" } else { "missed" })
            }
            (_, Some(t)) => format!("≤ {t:.1}×"),
            _ => "–".to_string(),
        };
        let l = &row.gpicl_last;
        let _ = writeln!(
            s,
            "| {} | {} | {:.1} | {:.0} / {:.0} / {:.0} | {:.0} | {} | {} | {} | {} | {} | {} | {} |",
            row.shape,
            params,
            row.gpicl_ms,
            l.fwd_ms,
            l.bwd_ms,
            l.opt_ms,
            l.gflops,
            r.peak
                .as_ref()
                .map_or("–".to_string(), |p| format!("{:.0} %", 100.0 * l.gflops / p.gflops)),
            ms(row.pytorch_ms),
            row.ratio.map_or("–".to_string(), |x| format!("{x:.2}×")),
            verdict,
            ms(row.gpicl_bf16_ms),
            ms(row.pytorch_bf16_ms),
            row.bf16_ratio
                .map_or("–".to_string(), |x| format!("{x:.2}×")),
        );
    }
    let checked: Vec<_> = r
        .rows
        .iter()
        .filter_map(|row| Some((row, row.bf16_quality.as_ref()?)))
        .collect();
    if !checked.is_empty() {
        s.push_str("\nbf16 quality check (mean training loss of the last 50 steps, fresh batches labelled by a fixed random linear teacher, same seed in both precisions; target ≤ 2 %):\n\n");
        s.push_str("| shape | steps | f32 | bf16 | difference |\n|---|---|---|---|---|\n");
        for (row, q) in checked {
            let _ = writeln!(
                s,
                "| {} | {} | {:.5} | {:.5} | {:.2} % |",
                row.shape,
                q.steps,
                q.f32_mean_loss,
                q.bf16_mean_loss,
                100.0 * q.relative_difference
            );
        }
    }
    if let Some(reason) = &r.bf16_skipped {
        let _ = writeln!(
            s,
            "\nbf16 not timed (gpicl nor PyTorch autocast): {reason}; PyTorch would emulate bf16 products on this CPU."
        );
    }
    for row in r.rows.iter().filter(|row| !row.errors.is_empty()) {
        let _ = writeln!(s, "\n{}: {}", row.shape, row.errors.join("; "));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench_refs::project_refs_dir;
    use crate::cpu::cpu_info_from;

    #[test]
    fn every_suite_shape_is_a_valid_config_with_a_pytorch_reference() {
        let shapes = suite_shapes();
        assert_eq!(shapes.len(), 8);
        for s in &shapes {
            s.cfg
                .validate()
                .unwrap_or_else(|e| panic!("{}: {e}", s.name));
            let n_x = feature_count(&s.cfg.data).unwrap();
            let step = pytorch_step(&s.cfg, n_x, &project_refs_dir()).unwrap();
            assert!(step.args.contains(&n_x.to_string()), "{}", s.name);
        }
        let d128 = &shapes[3].cfg;
        assert_eq!(
            (
                d128.model.transformer.d_model,
                d128.batch.sequences(),
                d128.data.image_size
            ),
            (128, 128, 14)
        );
        assert_eq!(shapes[6].cfg.model.lstm.hidden, 256);
        assert_eq!(
            (shapes[7].cfg.model.kind, shapes[7].cfg.batch.sequences()),
            (ModelKind::Vsml, 8)
        );
    }

    #[test]
    fn pytorch_bf16_is_timed_only_where_the_cpu_multiplies_bf16_natively() {
        let native = Ok(());
        let emulated = Err("no AMX-BF16 tiles".to_string());
        assert_eq!(reference_variants(true, &native).len(), 2);
        assert_eq!(reference_variants(true, &native)[1], ["--bf16"]);
        assert_eq!(reference_variants(true, &emulated).len(), 1);
        assert_eq!(reference_variants(false, &native).len(), 1);
        let report = SuiteReport {
            cpu: cpu_info_from(""),
            peak: None,
            commit: "x".into(),
            python_threads: 2,
            rounds: 1,
            steps: 1,
            rows: Vec::new(),
            bf16_skipped: emulated.err(),
        };
        assert!(
            markdown(&report)
                .contains("bf16 not timed (gpicl nor PyTorch autocast): no AMX-BF16 tiles"),
            "{}",
            markdown(&report)
        );
    }
}
