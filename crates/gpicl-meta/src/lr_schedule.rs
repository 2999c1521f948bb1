//! The learning rate at each step: optional linear warm-up, then constant
//! or cosine decay to a floor (`optim.warmup_steps`, `optim.decay`,
//! `optim.min_lr_fraction`, `optim.decay_steps`).

use crate::config::{LrDecay, OptimConfig};

/// The learning rate of step `step` (1-based) of a run of `total_steps`
/// steps (`schedule.steps`, the cosine horizon unless `optim.decay_steps`
/// sets one).
///
/// ```
/// use gpicl_meta::{lr_schedule::learning_rate, LrDecay, OptimConfig};
/// let optim = OptimConfig { lr: 1e-3, warmup_steps: 100, decay: LrDecay::Cosine, ..OptimConfig::default() };
/// assert_eq!(learning_rate(&optim, 1000, 50), 0.5e-3);
/// assert_eq!(learning_rate(&optim, 1000, 100), 1e-3);
/// assert!((learning_rate(&optim, 1000, 1000) - 1e-4).abs() < 1e-12);
/// ```
pub fn learning_rate(optim: &OptimConfig, total_steps: u64, step: u64) -> f64 {
    let warmup = optim.warmup_steps;
    if step < warmup {
        return optim.lr * step as f64 / warmup as f64;
    }
    match optim.decay {
        LrDecay::Constant => optim.lr,
        LrDecay::Cosine => {
            let horizon = if optim.decay_steps > 0 {
                optim.decay_steps
            } else {
                total_steps
            };
            let span = horizon.saturating_sub(warmup).max(1) as f64;
            let progress = ((step - warmup) as f64 / span).min(1.0);
            let floor = optim.min_lr_fraction;
            let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
            optim.lr * (floor + (1.0 - floor) * cosine)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn optim(warmup: u64, decay: LrDecay) -> OptimConfig {
        OptimConfig {
            lr: 2e-3,
            warmup_steps: warmup,
            decay,
            min_lr_fraction: 0.1,
            ..OptimConfig::default()
        }
    }

    #[test]
    fn the_reference_schedule_is_a_constant_learning_rate() {
        let o = OptimConfig::default();
        for step in [1, 10, 49_999, 50_000, 80_000] {
            assert_eq!(learning_rate(&o, 50_000, step), 1e-3);
        }
    }

    #[test]
    fn warm_up_rises_linearly_from_zero_to_the_learning_rate() {
        let o = optim(400, LrDecay::Constant);
        assert_eq!(learning_rate(&o, 10_000, 1), 2e-3 / 400.0);
        assert_eq!(learning_rate(&o, 10_000, 100), 0.5e-3);
        assert_eq!(learning_rate(&o, 10_000, 200), 1e-3);
        assert_eq!(learning_rate(&o, 10_000, 400), 2e-3);
        assert_eq!(learning_rate(&o, 10_000, 9_000), 2e-3);
    }

    #[test]
    fn cosine_decays_from_the_end_of_warm_up_to_the_floor_and_stays_there() {
        let o = optim(100, LrDecay::Cosine);
        assert_eq!(learning_rate(&o, 1_100, 100), 2e-3);
        // Half-way through the decay the cosine term is one half.
        let mid = learning_rate(&o, 1_100, 600);
        assert!((mid - 2e-3 * (0.1 + 0.9 * 0.5)).abs() < 1e-12, "{mid}");
        assert!((learning_rate(&o, 1_100, 1_100) - 2e-4).abs() < 1e-12);
        assert!((learning_rate(&o, 1_100, 5_000) - 2e-4).abs() < 1e-12);
        let mut previous = f64::INFINITY;
        for step in 100..=1_100 {
            let lr = learning_rate(&o, 1_100, step);
            assert!(lr <= previous, "cosine decay never rises (step {step})");
            previous = lr;
        }
    }

    #[test]
    fn an_explicit_decay_horizon_overrides_the_run_length() {
        let mut o = optim(0, LrDecay::Cosine);
        o.decay_steps = 1_000;
        assert!((learning_rate(&o, 50_000, 1_000) - 2e-4).abs() < 1e-12);
        assert!((learning_rate(&o, 50_000, 500) - 2e-3 * 0.55).abs() < 1e-12);
    }
}
