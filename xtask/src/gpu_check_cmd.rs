//! `cargo xtask gpu-check`: everything worth knowing about a GPU machine
//! in one command, with its logs in one folder.
//!
//! 1. the device (nvidia-smi and what candle sees);
//! 2. every fused op on the GPU against its composed definition on the CPU
//!    (forward and all gradients, within 1e-4 relative);
//! 3. 50 training steps of a small Transformer on the CPU and on the GPU
//!    from the same seed and batches (losses within 1e-4 relative);
//! 4. bf16 matrix products against fp32 over 200 steps of the same model;
//! 5. the paper-scale Transformer step (d_model 512, 4 layers, 512
//!    sequences × 100): median time and TFLOP/s, fp32 and bf16, and the
//!    same step in PyTorch eager when `torch` imports.
//!
//! Exits non-zero when a parity check fails.

use anyhow::{bail, Context, Result};
use clap::Args;
use gpicl::kernels::KernelOptions;
use gpicl::meta::bench::{bench_training_step, BenchReport};
use gpicl::meta::{Precision, RunDir, TrainConfig, Trainer};
use gpicl::tasks::dataset::feature_count;
use gpicl::tasks::DataRoots;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const TORCH_STEP: &str = include_str!("gpu/torch_step.py");
/// Relative tolerance of the fp32 parity checks.
const TOLERANCE: f32 = 1e-4;

#[derive(Args)]
pub struct GpuCheckArgs {
    /// The GPU to check.
    #[arg(long, default_value = "cuda")]
    device: String,
    /// Folder for the logs [default: gpu-check/<unix time>].
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Datasets for the training checks [default: the usual search, then ./data].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Python for the PyTorch comparison (skipped when torch does not import).
    #[arg(long, default_value = "python3")]
    python: String,
    /// Timed steps of each benchmark.
    #[arg(long, default_value_t = 20)]
    steps: usize,
    /// Training steps of the CPU-vs-GPU comparison.
    #[arg(long, default_value_t = 50)]
    train_steps: u64,
}

/// Writes every line to stdout and to `log.txt`.
struct Log {
    file: std::fs::File,
}

impl Log {
    fn line(&mut self, text: impl AsRef<str>) {
        outln!("{}", text.as_ref());
        let _ = writeln!(self.file, "{}", text.as_ref());
    }
}

pub fn run(args: GpuCheckArgs) -> Result<()> {
    let started = Instant::now();
    let out = args.out.clone().unwrap_or_else(|| {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        PathBuf::from(format!("gpu-check/{secs}"))
    });
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let mut log = Log {
        file: std::fs::File::create(out.join("log.txt"))?,
    };
    log.line(format!("gpu-check: logs in {}", out.display()));

    log.line("\n## Device");
    match Command::new("nvidia-smi")
        .args([
            "--query-gpu=name,driver_version,memory.total,compute_cap",
            "--format=csv",
        ])
        .output()
    {
        Ok(o) => log.line(String::from_utf8_lossy(&o.stdout).trim()),
        Err(e) => log.line(format!("nvidia-smi: {e}")),
    }
    let gpu = gpicl::kernels::device::parse_device(&args.device)
        .with_context(|| format!("--device {}", args.device))?;
    log.line(format!("candle device: {:?}", gpu.location()));

    let mut failures = Vec::new();

    log.line("\n## Fused ops: GPU vs composed CPU reference (forward and every gradient)");
    let parity = gpicl::kernels::parity::check_fused_ops(&gpu)?;
    log.line(format!("{:<40} {:>14}  worst", "op", "max rel error"));
    for r in &parity {
        let ok = r.max_rel_error < TOLERANCE;
        log.line(format!(
            "{:<40} {:>14.3e}  {}{}",
            r.op,
            r.max_rel_error,
            r.worst,
            if ok { "" } else { "  FAIL" }
        ));
        if !ok {
            failures.push(format!("fused op {}", r.op));
        }
    }
    std::fs::write(
        out.join("parity.json"),
        serde_json::to_string_pretty(&parity)?,
    )?;

    let roots = data_roots(args.data_dir.as_deref());
    log.line(format!(
        "\n## Training: {} steps, CPU vs GPU, same seed and batches",
        args.train_steps
    ));
    let cpu_losses = train_losses(
        &out,
        "train-cpu",
        "cpu",
        Precision::F32,
        args.train_steps,
        &roots,
    )?;
    let gpu_losses = train_losses(
        &out,
        "train-gpu",
        &args.device,
        Precision::F32,
        args.train_steps,
        &roots,
    )?;
    let worst = cpu_losses
        .iter()
        .zip(&gpu_losses)
        .map(|(c, g)| (c - g).abs() / c.abs().max(1e-6))
        .fold(0f32, f32::max);
    log.line(format!(
        "loss at step 1: cpu {:.6} gpu {:.6}; at step {}: cpu {:.6} gpu {:.6}; max rel diff {worst:.3e}{}",
        cpu_losses[0],
        gpu_losses[0],
        args.train_steps,
        cpu_losses.last().copied().unwrap_or(f32::NAN),
        gpu_losses.last().copied().unwrap_or(f32::NAN),
        if worst <= TOLERANCE { "" } else { "  FAIL" }
    ));
    if worst > TOLERANCE || worst.is_nan() {
        failures.push(format!("{} training steps CPU vs GPU", args.train_steps));
    }

    log.line("\n## bf16 matrix products vs fp32 on the GPU: 200 steps");
    let fp32 = train_losses(
        &out,
        "quality-fp32",
        &args.device,
        Precision::F32,
        200,
        &roots,
    )?;
    let bf16 = train_losses(
        &out,
        "quality-bf16",
        &args.device,
        Precision::Bf16,
        200,
        &roots,
    )?;
    let tail =
        |l: &[f32]| l[l.len().saturating_sub(20)..].iter().sum::<f32>() / 20f32.min(l.len() as f32);
    let (tail32, tail16) = (tail(&fp32), tail(&bf16));
    let gap = (tail16 - tail32) / tail32;
    log.line(format!(
        "mean loss over the last 20 steps: fp32 {tail32:.4}, bf16 {tail16:.4} ({:+.2}%){}",
        100.0 * gap,
        if gap.abs() <= 0.02 {
            ""
        } else {
            "  (more than 2% apart)"
        }
    ));
    if gap.abs() > 0.02 || gap.is_nan() {
        failures.push("bf16 training quality".into());
    }
    std::fs::write(
        out.join("losses.json"),
        serde_json::to_string(&serde_json::json!({
            "cpu_fp32": cpu_losses, "gpu_fp32": gpu_losses,
            "gpu_fp32_200": fp32, "gpu_bf16_200": bf16,
        }))?,
    )?;

    log.line("\n## Paper-scale Transformer step (d_model 512, 4 layers, 512 sequences x 100)");
    let mut cfg = TrainConfig::paper();
    cfg.device = args.device.clone();
    let n_x = feature_count(&cfg.data)?;
    let mut bench = serde_json::Map::new();
    for precision in [Precision::F32, Precision::Bf16] {
        cfg.precision = precision;
        let r = bench_training_step(&cfg, KernelOptions::from_env(), n_x, args.steps, 3)?;
        log.line(bench_line(&format!("gpicl {precision:?}"), &r));
        bench.insert(
            format!("gpicl_{precision:?}").to_lowercase(),
            serde_json::to_value(&r)?,
        );
    }
    let ours = bench["gpicl_f32"]["median_ms"].as_f64().unwrap_or(f64::NAN);
    let flops = bench["gpicl_f32"]["flops_per_step"]
        .as_f64()
        .unwrap_or(f64::NAN);
    match torch_available(&args.python) {
        Err(why) => log.line(format!("PyTorch comparison skipped: {why}")),
        Ok(version) => {
            let script = out.join("torch_step.py");
            std::fs::write(&script, TORCH_STEP)?;
            for (name, extra) in [
                ("torch eager", &[][..]),
                ("torch eager sdpa", &["--sdpa"][..]),
                ("torch eager bf16", &["--bf16"][..]),
            ] {
                match run_torch(&args.python, &script, &cfg, n_x, args.steps, extra) {
                    Ok(ms) => {
                        log.line(format!(
                            "{name:<22} {ms:9.2} ms  {:6.2} TFLOP/s  gpicl f32 / {name} = {:.2}x (torch {version})",
                            flops / (ms / 1e3) / 1e12,
                            ours / ms
                        ));
                        bench.insert(
                            name.replace(' ', "_"),
                            serde_json::json!({ "median_ms": ms }),
                        );
                    }
                    Err(e) => log.line(format!("{name}: {e:#}")),
                }
            }
        }
    }
    std::fs::write(
        out.join("bench.json"),
        serde_json::to_string_pretty(&bench)?,
    )?;

    log.line(format!(
        "\ngpu-check finished in {:.0} s: {}",
        started.elapsed().as_secs_f64(),
        if failures.is_empty() {
            "all parity checks passed".to_string()
        } else {
            format!("FAILED: {}", failures.join(", "))
        }
    ));
    if !failures.is_empty() {
        bail!("gpu-check failed: {}", failures.join(", "));
    }
    Ok(())
}

fn data_roots(explicit: Option<&Path>) -> DataRoots {
    // A copied binary cannot see the checkout it was built in: also try
    // ./data, where a clone of the repository keeps the embedded datasets.
    let local = Path::new("data");
    match explicit {
        Some(dir) => DataRoots::new(Some(dir)),
        None if local.join("mnist").is_dir() => DataRoots::new(Some(local)),
        None => DataRoots::new(None),
    }
}

/// The small model of the parity and bf16 checks: the quickstart
/// Transformer (d_model 64, 2 layers) on the embedded MNIST subset.
fn small_config(device: &str, precision: Precision, steps: u64) -> TrainConfig {
    let mut cfg = TrainConfig::small();
    cfg.device = device.to_string();
    cfg.precision = precision;
    cfg.schedule.steps = steps;
    cfg.schedule.checkpoint_every = steps.max(1);
    cfg
}

fn train_losses(
    out: &Path,
    name: &str,
    device: &str,
    precision: Precision,
    steps: u64,
    roots: &DataRoots,
) -> Result<Vec<f32>> {
    let dir = out.join(name);
    // A fresh run every time: a leftover checkpoint would resume.
    let _ = std::fs::remove_dir_all(&dir);
    let mut trainer = Trainer::open(
        small_config(device, precision, steps),
        RunDir::new(dir),
        roots,
    )
    .with_context(|| format!("starting the {name} run"))?;
    let mut losses = Vec::with_capacity(steps as usize);
    for _ in 0..steps {
        losses.push(trainer.train_step()?.loss);
    }
    Ok(losses)
}

fn bench_line(name: &str, r: &BenchReport) -> String {
    format!(
        "{name:<22} {:9.2} ms  {:6.2} TFLOP/s  (forward {:.1} ms, backward {:.1} ms, clip + Adam {:.1} ms; {} params)",
        r.median_ms,
        r.gflops / 1e3,
        r.fwd_ms,
        r.bwd_ms,
        r.opt_ms,
        r.params
    )
}

fn torch_available(python: &str) -> std::result::Result<String, String> {
    let out = Command::new(python)
        .args(["-c", "import torch; assert torch.cuda.is_available(), 'no CUDA in torch'; print(torch.__version__)"])
        .output()
        .map_err(|e| format!("{python}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        Err(format!(
            "`import torch` with CUDA failed in {python}: {}",
            err.lines().last().unwrap_or("").trim()
        ))
    }
}

fn run_torch(
    python: &str,
    script: &Path,
    cfg: &TrainConfig,
    n_x: usize,
    steps: usize,
    extra: &[&str],
) -> Result<f64> {
    let m = &cfg.model.transformer;
    let mut cmd = Command::new(python);
    cmd.arg(script).args([
        "--d-model",
        &m.d_model.to_string(),
        "--layers",
        &m.num_layers.to_string(),
        "--heads",
        &m.num_heads.to_string(),
        "--key",
        &m.key_size.to_string(),
        "--widening",
        &m.widening_factor.to_string(),
        "--din",
        &gpicl::models::tokens::width(n_x, gpicl::tasks::NUM_CLASSES).to_string(),
        "--batch",
        &cfg.batch.sequences().to_string(),
        "--seq",
        &cfg.batch.seq_len.to_string(),
        "--steps",
        &steps.to_string(),
    ]);
    if m.gelu_tanh {
        cmd.arg("--gelu-tanh");
    }
    let out = cmd
        .args(extra)
        .output()
        .context("running the PyTorch step")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "the PyTorch step failed: {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
        );
    }
    text.lines()
        .find_map(|l| l.strip_prefix("MEDIAN ")?.trim().parse().ok())
        .context("no MEDIAN line from the PyTorch step")
}

#[cfg(test)]
mod tests {
    use super::*;
    use gpicl_testing::{absent_path, scratch_dir};

    #[test]
    fn without_a_gpu_the_check_stops_at_the_device_and_says_why() {
        if gpicl::kernels::device::parse_device("cuda").is_ok() {
            return; // a GPU is here: `cargo xtask gpu-check` is the real test
        }
        let out = absent_path("gpu-check");
        let args = GpuCheckArgs {
            device: "cuda".into(),
            out: Some(out.clone()),
            data_dir: None,
            python: "python3".into(),
            steps: 1,
            train_steps: 1,
        };
        let err = format!("{:#}", run(args).unwrap_err());
        assert!(err.contains("--device cuda"), "{err}");
        let log = std::fs::read_to_string(out.join("log.txt")).unwrap();
        assert!(log.contains("## Device"), "{log}");
        std::fs::remove_dir_all(&out).unwrap();
    }

    #[test]
    fn the_pytorch_step_is_given_the_paper_shapes() {
        let cfg = TrainConfig::paper();
        let n_x = feature_count(&cfg.data).unwrap();
        // A fake python that prints its arguments and a median.
        let dir = scratch_dir("fake-python");
        let python = dir.join("python");
        std::fs::write(
            &python,
            "#!/bin/sh\necho \"$@\" > \"$(dirname \"$0\")/args\"\necho MEDIAN 12.5\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&python, std::fs::Permissions::from_mode(0o755)).unwrap();
        let ms = run_torch(
            python.to_str().unwrap(),
            Path::new("step.py"),
            &cfg,
            n_x,
            7,
            &["--sdpa"],
        )
        .unwrap();
        assert_eq!(ms, 12.5);
        let args = std::fs::read_to_string(dir.join("args")).unwrap();
        for expected in [
            "--d-model 512",
            "--layers 4",
            "--heads 8",
            "--key 32",
            "--din 206",
            "--batch 512",
            "--seq 100",
            "--steps 7",
            "--gelu-tanh",
            "--sdpa",
        ] {
            assert!(args.contains(expected), "{expected} missing from {args}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
