//! Loss plateaus: how long training sat near the chance loss before it
//! dropped.
//!
//! GPICL meta-training typically starts on a plateau at the loss of a
//! uniform guess, `ln(classes)` (ln 10 ≈ 2.303 for 10-way tasks), and
//! leaves it abruptly; the paper's interventions (larger batches, Adam's
//! `eps`, biased task distributions) are judged by how long the plateau
//! lasts. [`detect_plateau`] measures that on a loss curve: the curve is
//! smoothed with a trailing mean (single noisy steps neither end nor extend
//! a plateau), steps whose smoothed loss is within `tolerance` of chance
//! count as plateau steps, and the plateau ends at the first step whose
//! smoothed loss falls below `chance − tolerance`.
//!
//! ```
//! use gpicl_meta::plateau::{detect_plateau, PlateauCriteria};
//! // 200 steps at chance, then a fast drop.
//! let curve: Vec<(u64, f64)> = (1..=400)
//!     .map(|s| (s, if s <= 200 { 10f64.ln() } else { 0.5 }))
//!     .collect();
//! let p = detect_plateau(&curve, &PlateauCriteria::for_classes(10));
//! assert_eq!(p.drop_step, Some(204));
//! assert!(p.steps_near_chance >= 200);
//! ```

use crate::error::Result;
use crate::metrics::MetricsLog;
use crate::record::{as_written, RunRecord};
use serde::Serialize;

/// What counts as "near chance" and how much to smooth.
#[derive(Clone, Debug, PartialEq)]
pub struct PlateauCriteria {
    /// The loss of a uniform guess, `ln(classes)`.
    pub chance_loss: f64,
    /// Distance from the chance loss (nats) still counted as the plateau.
    pub tolerance: f64,
    /// Steps in the trailing mean that smooths the curve.
    pub window: usize,
}

impl PlateauCriteria {
    /// `ln(classes)`, a tolerance of 10 % of it (0.23 nats for 10 classes)
    /// and a 25-step window (a sudden drop is detected 4 steps late, a
    /// single outlier step is ignored).
    pub fn for_classes(classes: usize) -> Self {
        let chance_loss = (classes.max(2) as f64).ln();
        Self {
            chance_loss,
            tolerance: 0.1 * chance_loss,
            window: 25,
        }
    }
}

/// The plateau of one loss curve.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Plateau {
    /// The loss of a uniform guess the curve was compared with.
    pub chance_loss: f64,
    /// Steps before the drop whose smoothed loss was within the tolerance
    /// of chance.
    pub steps_near_chance: u64,
    /// The first step whose smoothed loss fell below `chance − tolerance`;
    /// `None` if the run never left the plateau.
    pub drop_step: Option<u64>,
    /// The last step of the curve (how long the run was).
    pub last_step: u64,
}

/// Measures the plateau of `curve`, a list of `(step, loss)` in step order
/// with one entry per step. Non-finite losses count as not below chance.
pub fn detect_plateau(curve: &[(u64, f64)], criteria: &PlateauCriteria) -> Plateau {
    let window = criteria.window.max(1);
    let (chance, tol) = (criteria.chance_loss, criteria.tolerance);
    let mut steps_near_chance = 0;
    let mut drop_step = None;
    let mut sum = 0.0;
    for (i, &(step, loss)) in curve.iter().enumerate() {
        sum += loss;
        if i >= window {
            sum -= curve[i - window].1;
        }
        let smoothed = sum / (i + 1).min(window) as f64;
        if smoothed < chance - tol {
            drop_step = Some(step);
            break;
        }
        if (smoothed - chance).abs() <= tol || !smoothed.is_finite() {
            steps_near_chance += 1;
        }
    }
    Plateau {
        chance_loss: chance,
        steps_near_chance,
        drop_step,
        last_step: curve.last().map_or(0, |&(s, _)| s),
    }
}

/// The loss curve a run's plateau is judged on, from its metrics records:
/// the loss on the sequences outside a biased distribution's fixed task
/// (`loss_unbiased`) where the run logged it, else the training loss.
pub fn plateau_curve(records: &[RunRecord]) -> Vec<(u64, f64)> {
    let train = || records.iter().filter_map(RunRecord::as_train);
    if train().any(|r| r.loss_unbiased.is_some()) {
        train()
            .filter_map(|r| Some((r.step, as_written(r.loss_unbiased?))))
            .collect()
    } else {
        train().map(|r| (r.step, as_written(r.loss))).collect()
    }
}

/// The plateau of a run's training loss, read from its `metrics.jsonl`
/// (see [`plateau_curve`]).
pub fn plateau_of_run(log: &MetricsLog, criteria: &PlateauCriteria) -> Result<Plateau> {
    Ok(detect_plateau(&plateau_curve(&log.read()?), criteria))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::EvalRecord;
    use gpicl_kernels::rng::Rng;
    use gpicl_testing::scratch_dir;

    fn train(step: u64, loss: f32, loss_unbiased: Option<f32>) -> RunRecord {
        RunRecord::Train(crate::TrainRecord {
            step,
            loss,
            loss_unbiased,
            ..Default::default()
        })
    }

    fn criteria() -> PlateauCriteria {
        PlateauCriteria::for_classes(10)
    }

    /// Chance loss plus noise for `plateau` steps, then an exponential
    /// decay to 0.3, with noise throughout.
    fn synthetic(plateau: u64, total: u64, noise: f64, seed: u64) -> Vec<(u64, f64)> {
        let mut rng = Rng::new(seed);
        let chance = 10f64.ln();
        (1..=total)
            .map(|s| {
                let clean = if s <= plateau {
                    chance
                } else {
                    0.3 + (chance - 0.3) * (-((s - plateau) as f64) / 20.0).exp()
                };
                (s, clean + noise * rng.normal())
            })
            .collect()
    }

    #[test]
    fn a_long_plateau_is_measured_to_within_the_smoothing_window() {
        for (plateau, seed) in [(50, 1), (300, 2), (1000, 3)] {
            let p = detect_plateau(&synthetic(plateau, plateau + 400, 0.03, seed), &criteria());
            let drop = p.drop_step.expect("the curve drops");
            assert!(
                drop > plateau && drop < plateau + 20,
                "plateau {plateau}: drop at {drop}"
            );
            assert!(
                p.steps_near_chance >= plateau - 2 && p.steps_near_chance <= drop,
                "plateau {plateau}: {} steps near chance",
                p.steps_near_chance
            );
        }
    }

    #[test]
    fn a_curve_that_never_leaves_chance_has_no_drop() {
        let p = detect_plateau(&synthetic(500, 500, 0.03, 4), &criteria());
        assert_eq!(p.drop_step, None);
        assert_eq!((p.steps_near_chance, p.last_step), (500, 500));
    }

    #[test]
    fn a_curve_that_starts_below_chance_has_no_plateau() {
        let curve: Vec<(u64, f64)> = (1..=100).map(|s| (s, 1.0 / s as f64)).collect();
        let p = detect_plateau(&curve, &criteria());
        assert_eq!((p.steps_near_chance, p.drop_step), (0, Some(1)));
    }

    #[test]
    fn a_single_low_step_does_not_end_the_plateau() {
        let mut curve = synthetic(200, 400, 0.0, 5);
        curve[99].1 = 1.0; // one outlier at step 100
        let p = detect_plateau(&curve, &criteria());
        assert!(p.drop_step.unwrap() > 200, "{p:?}");
    }

    #[test]
    fn an_initial_transient_above_chance_is_not_counted() {
        // 20 steps far above chance (a bad initialisation), 100 at chance.
        let chance = 10f64.ln();
        let curve: Vec<(u64, f64)> = (1..=200)
            .map(|s| match s {
                1..=20 => (s, 5.0),
                21..=120 => (s, chance),
                _ => (s, 0.5),
            })
            .collect();
        let p = detect_plateau(&curve, &criteria());
        // The smoothing window still holds the transient for a few steps
        // after it ends, so slightly fewer than the 100 steps count.
        assert!((75..=106).contains(&p.steps_near_chance), "{p:?}");
        assert_eq!(p.drop_step, Some(124));
    }

    #[test]
    fn an_empty_curve_has_no_plateau() {
        let p = detect_plateau(&[], &criteria());
        assert_eq!(
            (p.steps_near_chance, p.drop_step, p.last_step),
            (0, None, 0)
        );
    }

    #[test]
    fn the_plateau_of_a_run_is_read_from_its_train_records() {
        let dir = scratch_dir("plateau");
        let log = MetricsLog::open(&dir.join("metrics.jsonl"));
        for (step, loss) in synthetic(30, 80, 0.0, 6) {
            log.append(&train(step, loss as f32, None)).unwrap();
            // Evaluation records carry other losses and must be ignored.
            log.append(&RunRecord::Eval(EvalRecord {
                step,
                dataset: "mnist".into(),
                group: "unseen".into(),
                acc_first: 0.1,
                acc_last: 0.1,
                loss_last: 0.1,
            }))
            .unwrap();
        }
        let p = plateau_of_run(&log, &criteria()).unwrap();
        assert!(
            p.drop_step.unwrap() > 30 && p.steps_near_chance >= 30,
            "{p:?}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_biased_run_is_judged_on_the_loss_outside_its_fixed_task() {
        // The fixed task is memorised at once (loss falls from step 1),
        // while the other sequences sit at chance for 60 steps.
        let records: Vec<RunRecord> = synthetic(60, 120, 0.0, 7)
            .into_iter()
            .map(|(step, unbiased)| {
                let loss = 0.75 * unbiased + 0.25 * 0.01;
                train(step, loss as f32, Some(unbiased as f32))
            })
            .collect();
        let p = detect_plateau(&plateau_curve(&records), &criteria());
        assert!(p.drop_step.unwrap() > 60, "{p:?}");
        let without: Vec<RunRecord> = records
            .iter()
            .filter_map(RunRecord::as_train)
            .map(|r| train(r.step, r.loss, None))
            .collect();
        let q = detect_plateau(&plateau_curve(&without), &criteria());
        assert!(q.drop_step.unwrap() < p.drop_step.unwrap(), "{q:?}");
    }
}
