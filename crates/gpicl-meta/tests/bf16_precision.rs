//! `precision = "bf16"` on the CPU: products on AMX tiles, training that
//! follows the f32 run closely. Its own test binary, because the precision
//! is a process-wide switch that would change other tests' products.

use gpicl_meta::bench::teacher_losses;
use gpicl_meta::{Precision, TrainConfig};

fn tiny() -> TrainConfig {
    let mut cfg = TrainConfig::small();
    cfg.model.d_model = 32;
    cfg.model.num_layers = 1;
    cfg.model.num_heads = 2;
    cfg.model.key_size = 16;
    cfg.batch.tasks_per_step = 1;
    cfg.batch.seqs_per_task = 8;
    cfg.batch.seq_len = 24;
    cfg.optim.lr = 1e-3;
    cfg
}

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
    let bf16 = teacher_losses(&cfg, 49, steps).unwrap();
    cfg.precision = Precision::F32;
    let f32 = teacher_losses(&cfg, 49, steps).unwrap();
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
