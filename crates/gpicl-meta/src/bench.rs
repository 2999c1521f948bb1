//! Timing full meta-training steps on a fixed batch.

use crate::config::TrainConfig;
use crate::error::Result;
use crate::optim::build_optimizer;
use gpicl_kernels::rng::Rng;
use gpicl_kernels::Tensor;
use gpicl_kernels::{Device, KernelOptions};
use gpicl_models::{build_model, SequenceModel};
use gpicl_tasks::NUM_CLASSES;
use serde::Serialize;
use std::time::Instant;

/// Medians over the timed steps, in milliseconds.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    /// Model kind.
    pub model: String,
    /// Scalar parameters.
    pub params: usize,
    /// Sequences × positions per step.
    pub tokens_per_step: usize,
    /// Median whole step.
    pub median_ms: f64,
    /// Fastest step.
    pub min_ms: f64,
    /// Slowest step.
    pub max_ms: f64,
    /// Median forward pass (with the loss).
    pub fwd_ms: f64,
    /// Median backward pass (with gradient extraction).
    pub bwd_ms: f64,
    /// Median clipping and Adam update.
    pub opt_ms: f64,
    /// Tokens per second at the median step.
    pub tokens_per_s: f64,
    /// Floating-point operations of one step: the model's forward count
    /// times 3 (the backward pass costs about twice the forward).
    pub flops_per_step: f64,
    /// Achieved GFLOP/s at the median step.
    pub gflops: f64,
    /// Peak resident memory of the process during the timed steps, in MiB
    /// (Linux; `None` elsewhere).
    pub peak_rss_mib: Option<f64>,
    /// Timed steps.
    pub steps: usize,
}

/// Resets the kernel's peak-RSS counter of this process (Linux ≥ 4.0), so
/// that [`peak_rss_mib`] measures from here.
pub fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Peak resident memory of this process (`VmHWM`), in MiB.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

/// Validates `cfg` and builds its model for `n_x` features on its device, with `kernels` at `cfg`'s precision.
fn model_for(
    cfg: &TrainConfig,
    kernels: KernelOptions,
    n_x: usize,
) -> Result<(Device, Box<dyn SequenceModel>)> {
    cfg.validate()?;
    let device = gpicl_kernels::device::parse_device(&cfg.device)?;
    let model = build_model(
        &cfg.model,
        n_x,
        NUM_CLASSES,
        cfg.batch.seq_len,
        cfg.seed,
        &device,
        cfg.precision.kernel_options(kernels),
    )?;
    Ok((device, model))
}

/// Examples `[b, t, n_x]` from `features` (`n_x` per example) with their
/// `labels` `[b, t]`, on `device`.
fn examples(
    features: Vec<f32>,
    labels: Vec<u32>,
    n_x: usize,
    (b, t): (usize, usize),
    device: &Device,
) -> Result<(Tensor, Tensor)> {
    Ok((
        Tensor::from_vec(features, (b, t, n_x), device)?,
        Tensor::from_vec(labels, (b, t), device)?,
    ))
}

/// One random batch of `cfg`'s shape with `n_x` features per example and
/// random labels.
fn fixed_batch(cfg: &TrainConfig, n_x: usize, device: &Device) -> Result<(Tensor, Tensor)> {
    let (b, t) = (cfg.batch.sequences(), cfg.batch.seq_len);
    let mut rng = Rng::new(cfg.seed);
    let labels: Vec<u32> = (0..b * t)
        .map(|_| rng.below(NUM_CLASSES as u64) as u32)
        .collect();
    let features: Vec<f32> = (0..b * t * n_x).map(|_| rng.normal() as f32).collect();
    examples(features, labels, n_x, (b, t), device)
}

/// The training loss of each of `steps` full training steps (clipping and
/// Adam included), each on a fresh random batch of `cfg`'s shape whose
/// labels a fixed random linear teacher assigns (`argmax x·T`, with the
/// previous label as input, as in training): a function to learn rather
/// than a batch to memorise, so that the loss stays informative. Two
/// precisions compared on the same curve are the quality check of
/// `precision = "bf16"`. `kernels` says which kernels run (e.g.
/// [`KernelOptions::from_env`]); the precision is `cfg`'s.
pub fn teacher_losses(
    cfg: &TrainConfig,
    kernels: KernelOptions,
    n_x: usize,
    steps: usize,
) -> Result<Vec<f32>> {
    let (device, model) = model_for(cfg, kernels, n_x)?;
    let (b, t) = (cfg.batch.sequences(), cfg.batch.seq_len);
    let mut rng = Rng::new(cfg.seed ^ 0x7ea_c4e5);
    let teacher: Vec<f32> = (0..n_x * NUM_CLASSES)
        .map(|_| rng.normal() as f32)
        .collect();
    let mut optimizer = build_optimizer(&cfg.optim, model.params());
    let mut losses = Vec::with_capacity(steps);
    for _ in 0..steps {
        let features: Vec<f32> = (0..b * t * n_x).map(|_| rng.normal() as f32).collect();
        let labels: Vec<u32> = features
            .chunks_exact(n_x)
            .map(|x| {
                let mut scores = [0f32; NUM_CLASSES];
                for (v, row) in x.iter().zip(teacher.chunks_exact(NUM_CLASSES)) {
                    for (score, w) in scores.iter_mut().zip(row) {
                        *score += v * w;
                    }
                }
                (0..NUM_CLASSES).fold(0, |best, c| if scores[c] > scores[best] { c } else { best })
                    as u32
            })
            .collect();
        let (inputs, labels) = examples(features, labels, n_x, (b, t), &device)?;
        let step = model.loss_and_grads(&inputs, &labels)?;
        let mut grads = step.grads;
        grads.clip_global_norm(cfg.optim.clip_norm);
        optimizer.update(model.params(), &grads, cfg.optim.lr)?;
        losses.push(step.loss);
    }
    Ok(losses)
}

/// Runs `warmup + steps` full training steps (forward, backward, clipping,
/// Adam) of `cfg`'s model and batch shape on one fixed random batch with
/// `n_x` features, and reports median timings of the last `steps`.
/// `kernels` says which kernels run (e.g. [`KernelOptions::composed`] to
/// time the composed references); the precision is `cfg`'s.
pub fn bench_training_step(
    cfg: &TrainConfig,
    kernels: KernelOptions,
    n_x: usize,
    steps: usize,
    warmup: usize,
) -> Result<BenchReport> {
    let (device, model) = model_for(cfg, kernels, n_x)?;
    let (b, t) = (cfg.batch.sequences(), cfg.batch.seq_len);
    let (inputs, labels) = fixed_batch(cfg, n_x, &device)?;
    let mut optimizer = build_optimizer(&cfg.optim, model.params());
    let (mut total, mut fwd, mut bwd, mut opt) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..warmup + steps {
        if i == warmup {
            reset_peak_rss();
        }
        let t0 = Instant::now();
        let step = model.loss_and_grads(&inputs, &labels)?;
        let mut grads = step.grads;
        let t1 = t0 + std::time::Duration::from_secs_f64(step.forward_seconds);
        let t2 = Instant::now();
        grads.clip_global_norm(cfg.optim.clip_norm);
        optimizer.update(model.params(), &grads, cfg.optim.lr)?;
        let t3 = Instant::now();
        if i >= warmup {
            let ms = |a: Instant, b: Instant| (b - a).as_secs_f64() * 1e3;
            total.push(ms(t0, t3));
            fwd.push(ms(t0, t1));
            bwd.push(ms(t1, t2));
            opt.push(ms(t2, t3));
        }
    }
    let median_ms = median(total.clone());
    let flops_per_step = 3.0 * model.forward_flops(b, t);
    Ok(BenchReport {
        model: cfg.model.kind.to_string(),
        params: model.param_count(),
        tokens_per_step: b * t,
        median_ms,
        min_ms: total.iter().copied().fold(f64::INFINITY, f64::min),
        max_ms: total.iter().copied().fold(0.0, f64::max),
        fwd_ms: median(fwd),
        bwd_ms: median(bwd),
        opt_ms: median(opt),
        tokens_per_s: (b * t) as f64 / (median_ms / 1e3),
        flops_per_step,
        gflops: flops_per_step / (median_ms / 1e3) / 1e9,
        peak_rss_mib: peak_rss_mib(),
        steps,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Precision;

    #[test]
    fn the_benchmark_times_every_phase_of_a_step() {
        let mut cfg = TrainConfig::small();
        cfg.model.transformer.d_model = 8;
        cfg.model.transformer.num_layers = 1;
        cfg.batch.tasks_per_step = 1;
        cfg.batch.seqs_per_task = 2;
        cfg.batch.seq_len = 5;
        let r = bench_training_step(&cfg, KernelOptions::default(), 4, 3, 1).unwrap();
        assert_eq!((r.steps, r.tokens_per_step), (3, 10));
        assert!(r.min_ms <= r.median_ms && r.median_ms <= r.max_ms);
        assert!(r.fwd_ms > 0.0 && r.bwd_ms > 0.0 && r.opt_ms > 0.0);
        assert!(r.flops_per_step > 0.0 && r.gflops > 0.0);
        if cfg!(target_os = "linux") {
            assert!(r.peak_rss_mib.unwrap() > 1.0);
        }
        assert_eq!(median(vec![3.0, 1.0, 2.0, 10.0]), 2.5);
    }

    /// A one-layer Transformer config small enough for 80 steps in a test.
    fn tiny() -> TrainConfig {
        let mut cfg = TrainConfig::small();
        cfg.model.transformer.d_model = 32;
        cfg.model.transformer.num_layers = 1;
        cfg.model.transformer.num_heads = 2;
        cfg.model.transformer.key_size = 16;
        cfg.batch.tasks_per_step = 1;
        cfg.batch.seqs_per_task = 8;
        cfg.batch.seq_len = 24;
        cfg.optim.lr = 1e-3;
        cfg
    }

    /// `precision = "bf16"` on the CPU: products on AMX tiles, training
    /// that follows the f32 run closely. The precision is part of each
    /// model's kernel options, so this runs beside any other test.
    #[test]
    fn bf16_training_follows_f32_training_where_the_cpu_has_amx() {
        let mut cfg = tiny();
        cfg.precision = Precision::Bf16;
        if let Err(why) = gpicl_kernels::bf16::support() {
            let refused = cfg.validate().unwrap_err().to_string();
            assert!(
                refused.contains("precision") && refused.contains(&why),
                "{refused}"
            );
            eprintln!("bf16 refused as it should be here: {why}");
            return;
        }
        let steps = 80;
        let bf16 = teacher_losses(&cfg, KernelOptions::default(), 49, steps).unwrap();
        cfg.precision = Precision::F32;
        let f32 = teacher_losses(&cfg, KernelOptions::default(), 49, steps).unwrap();
        assert_ne!(bf16, f32, "bf16 products must change the arithmetic");
        let tail = |l: &[f32]| l[l.len() - 20..].iter().map(|&x| x as f64).sum::<f64>() / 20.0;
        let (b, f) = (tail(&bf16), tail(&f32));
        assert!(
            f < 0.9 * f64::from(f32[0]),
            "f32 training learns the batch: {} → {f}",
            f32[0]
        );
        assert!(
            (b - f).abs() / f < 0.02,
            "mean loss of the last 20 steps: bf16 {b}, f32 {f}"
        );
    }
}
