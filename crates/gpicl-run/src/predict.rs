//! Using a meta-trained learner on data of one's own: the training rows
//! become its context, each test row a query.
//!
//! Features are z-scored with the training rows' statistics (per feature
//! for tables, over all pixels for images, [`Scaling`]) and mapped to the
//! learner's input size by a random projection with `N(0, 1/D)` entries —
//! the family of tasks it was meta-trained on. An ensemble
//! averages the class probabilities of several members, each with its own
//! projection, label assignment and context order.
//!
//! Beyond the learner's limits: with more training rows than its context
//! holds (99), the rows are dealt, class by class, into equal parts of at
//! most 99 and every part is some member's context, so every row is used
//! ([`Learner::members_for`]). With more than 10 classes each member maps
//! the classes onto the learner's 10 labels in a random balanced grouping
//! (an output code), and the class probabilities are the normalised
//! product of the members' (a product of experts): classes that share a
//! label in one member are told apart by the others.
//!
//! ```
//! use gpicl_run::predict::{Learner, PredictOptions};
//! let learner = Learner::load(std::path::Path::new("../../models/gpicl-mnist-14px"), PredictOptions::default())?;
//! // Two features, two classes, four training rows.
//! let x = vec![vec![0.0, 1.0], vec![0.1, 0.9], vec![1.0, 0.0], vec![0.9, 0.1]];
//! let y = vec![0, 0, 1, 1];
//! let fitted = learner.fit(&x, &y)?;
//! let p = fitted.predict_proba(&[vec![0.95, 0.05]])?;
//! assert_eq!(p[0].len(), 2);
//! assert!((p[0].iter().sum::<f32>() - 1.0).abs() < 1e-4);
//! # Ok::<(), gpicl_run::RunError>(())
//! ```

use crate::error::{Result, RunError};
use gpicl_kernels::{Device, Tensor};
use gpicl_meta::{load_run, LoadedRun, RunDir};
use gpicl_models::ContextCache;
use gpicl_tasks::{FeatureNormalization, FeatureStatistics, NUM_CLASSES};
use std::path::Path;

mod members;
pub mod report;
use gpicl_tasks::table_features::FeatureMap;
pub use gpicl_tasks::table_features::Scaling;
pub use members::Squares;
use members::{covering_parts, topped_up, Member};
pub use members::{index_classes, stratified_subset};

/// How a learner is applied.
#[derive(Clone, Debug, PartialEq)]
pub struct PredictOptions {
    /// Ensemble members (projections × label assignments × context
    /// orders) whose probabilities are averaged. Default 8; raised where
    /// the rows or the classes need more ([`Learner::members_for`]).
    pub ensemble: usize,
    /// Seed of the members' projections, assignments and orders. Default 0.
    pub seed: u64,
    /// Query sequences per forward pass. Default 256.
    pub chunk_size: usize,
    /// Feature normalisation. Default [`Scaling::PerFeature`].
    pub scaling: Scaling,
    /// z-scores are clipped to `±clip` (0: not clipped). Default 0;
    /// `predict` clips tables at 2 (docs/predict.md).
    pub clip: f32,
    /// Which members also read the squared z-scores. Default
    /// [`Squares::None`]; `predict` gives tables [`Squares::Half`].
    pub squares: Squares,
    /// Fill every member's context to what the learner holds (99 rows):
    /// fewer training rows are read again in fresh orders (each once
    /// before any twice; the learner met exact repeats in meta-training's
    /// `random` tasks), and beyond 99 rows each member's part is topped up
    /// with rows of the other parts. Default `false`; `predict` fills the
    /// contexts of tables (docs/predict.md).
    pub fill_contexts: bool,
    /// Calibrate the probabilities with one temperature fitted on the
    /// context itself ([`FittedLearner::temperature`]). Default `false`:
    /// measured on iris, wine and breast cancer it lowered the log-loss on
    /// iris and raised it on breast cancer (docs/predict.md).
    pub calibrate: bool,
}

impl Default for PredictOptions {
    fn default() -> Self {
        Self {
            ensemble: 8,
            seed: 0,
            chunk_size: 256,
            scaling: Scaling::PerFeature,
            clip: 0.0,
            squares: Squares::None,
            fill_contexts: false,
            calibrate: false,
        }
    }
}

/// A meta-trained sequence model ready to learn from a context.
pub struct Learner {
    run: LoadedRun,
    options: PredictOptions,
}

impl Learner {
    /// Loads the learner (a run directory or an exported `models/<name>`).
    pub fn load(dir: &Path, options: PredictOptions) -> Result<Self> {
        if options.ensemble == 0 || options.chunk_size == 0 {
            return Err(RunError::Learner(
                "--ensemble and the chunk size must be at least 1".into(),
            ));
        }
        let run = load_run(&RunDir::new(dir), &Device::Cpu)?;
        Ok(Self { run, options })
    }

    /// Examples the learner's context holds (its sequence length minus the
    /// query).
    pub fn context_len(&self) -> usize {
        self.run.config.batch.seq_len - 1
    }

    /// Classes one forward pass tells apart (the learner's labels); more
    /// are handled with output codes over the ensemble.
    pub fn max_classes(&self) -> usize {
        NUM_CLASSES
    }

    /// Ensemble members used for `rows` training rows of `classes` classes:
    /// the `ensemble` option, raised so that the members' contexts cover
    /// every row (one member per part of at most [`Learner::context_len`]
    /// rows) and, beyond 10 classes, to 4 members per power of ten of
    /// classes, so that two classes share a label in every member with
    /// probability about 10⁻⁴ per power of ten.
    pub fn members_for(&self, rows: usize, classes: usize) -> usize {
        let parts = rows.div_ceil(self.context_len().max(1));
        let codes = if classes > NUM_CLASSES {
            4 * (classes as f64).log10().ceil() as usize
        } else {
            1
        };
        self.options.ensemble.max(parts).max(codes)
    }

    /// The square image side the learner was meta-trained at (0 for a
    /// table-trained learner): the size image folders are resized to.
    pub fn image_size(&self) -> usize {
        self.run.config.data.image_size
    }

    /// Steps the learner was meta-trained for.
    pub fn step(&self) -> u64 {
        self.run.step
    }

    /// Takes `x` (rows of features) with labels `y` (class indices
    /// `0..k`, k ≤ 10) as the context. Nothing is trained: fitting is
    /// normalising and drawing the ensemble.
    pub fn fit(&self, x: &[Vec<f32>], y: &[usize]) -> Result<FittedLearner<'_>> {
        if x.is_empty() || x.len() != y.len() {
            return Err(RunError::Learner(format!(
                "fit needs as many labels as rows and at least one row: {} rows, {} labels",
                x.len(),
                y.len()
            )));
        }
        let d = x[0].len();
        if d == 0 {
            return Err(RunError::Learner("rows have no features".into()));
        }
        if let Some((i, row)) = x.iter().enumerate().find(|(_, r)| r.len() != d) {
            return Err(RunError::Learner(format!(
                "training row {i} has {} features, row 0 has {d}",
                row.len()
            )));
        }
        let classes = y.iter().max().map_or(0, |m| m + 1);
        if y.iter().all(|&c| c == y[0]) {
            return Err(RunError::Learner(
                "the training labels name one class only: classification needs at least two".into(),
            ));
        }
        let features = FeatureMap::fit(
            x,
            self.options.scaling,
            self.options.clip,
            self.options.squares != Squares::None,
        );
        let classes = classes.max(2);
        let parts = x.len().div_ceil(self.context_len().max(1));
        let members = (0..self.members_for(x.len(), classes))
            .map(|m| {
                // Beyond one context's worth of rows, member m reads part
                // m % parts of the rows as dealt for its round m / parts.
                let context = (parts > 1)
                    .then(|| covering_parts(y, parts, self.options.seed, (m / parts) as u64))
                    .map(|mut dealt| {
                        let part = dealt.swap_remove(m % parts);
                        if self.options.fill_contexts {
                            topped_up(part, &dealt, self.context_len(), self.options.seed, m)
                        } else {
                            part
                        }
                    });
                let squares = self.options.squares.for_member(m);
                Member::draw(
                    self.options.seed,
                    m,
                    features.width(squares),
                    squares,
                    self.run.n_x,
                    y,
                    classes,
                    self.context_len(),
                    context,
                    self.options.fill_contexts,
                )
            })
            .collect();
        let mut fitted = FittedLearner {
            learner: self,
            features,
            x: x.to_vec(),
            y: y.to_vec(),
            classes,
            members,
            cache: None,
            query_statistics: Vec::new(),
            temperature: 1.0,
        };
        fitted.read_contexts()?;
        if self.options.calibrate {
            fitted.temperature = fitted.fit_temperature()?;
        }
        Ok(fitted)
    }
}

/// A learner with its context.
pub struct FittedLearner<'a> {
    learner: &'a Learner,
    features: FeatureMap,
    x: Vec<Vec<f32>>,
    y: Vec<usize>,
    classes: usize,
    members: Vec<Member>,
    /// Every member's context, read once at fit (one sequence per
    /// member): a query costs one position per member.
    cache: Option<ContextCache>,
    /// Per member, the context's feature statistics that its queries are
    /// z-scored by (a learner meta-trained on per-sequence feature
    /// normalisation), else none.
    query_statistics: Vec<Option<FeatureStatistics>>,
    /// Divides every logit before the softmax: see
    /// [`FittedLearner::temperature`].
    temperature: f32,
}

impl FittedLearner<'_> {
    /// Classes of the context (the width of each probability row).
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Training rows each member sees (all, or a subset when there are more
    /// than the learner's context holds).
    pub fn context_rows(&self) -> usize {
        self.members[0].context.len()
    }

    /// Ensemble members (more than asked for where the rows or the classes
    /// need them: [`Learner::members_for`]).
    pub fn members(&self) -> usize {
        self.members.len()
    }

    /// The temperature every logit is divided by (1 without calibration).
    /// Fitted on the context itself, prequentially: the model's prediction
    /// at each context position already holds that example out (it sees
    /// only the examples before it), so the positions of the second half of
    /// every member's context — predicted from at least half of it — are
    /// held-out predictions whose log-loss the temperature minimises (a
    /// row read again in a filled context is skipped: it is not held out).
    /// Needs no extra forward pass: reading the context computes them.
    pub fn temperature(&self) -> f32 {
        self.temperature
    }

    /// The temperature minimising the log-loss of the members' predictions
    /// of the second half of their contexts (1 when there are fewer than 4
    /// context rows).
    fn fit_temperature(&self) -> Result<f32> {
        let Some(logits) = self.cache.as_ref().and_then(|c| c.context_logits()) else {
            return Ok(1.0);
        };
        let logits: Vec<Vec<Vec<f32>>> = logits.to_vec3()?;
        // (the logits the member's probabilities are made of, the target).
        let mut held_out: Vec<(Vec<f64>, usize)> = Vec::new();
        for (member, positions) in self.members.iter().zip(&logits) {
            let p = member.context.len();
            if p < 4 {
                continue;
            }
            for (t, &row) in member.context.iter().enumerate().skip(p / 2) {
                if member.context[..t].contains(&row) {
                    // A repeated row (filled contexts) is not held out.
                    continue;
                }
                let class = self.y[row];
                let at = &positions[t];
                held_out.push(if self.classes <= NUM_CLASSES {
                    (
                        (0..self.classes)
                            .map(|c| at[member.label_of[c]] as f64)
                            .collect(),
                        class,
                    )
                } else {
                    (
                        at.iter().map(|&v| v as f64).collect(),
                        member.label_of[class],
                    )
                });
            }
        }
        if held_out.is_empty() {
            return Ok(1.0);
        }
        let log_loss = |log_t: f64| -> f64 {
            let t = log_t.exp();
            held_out
                .iter()
                .map(|(z, target)| {
                    let max = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let sum: f64 = z.iter().map(|v| ((v - max) / t).exp()).sum();
                    sum.ln() - (z[*target] - max) / t
                })
                .sum::<f64>()
                / held_out.len() as f64
        };
        // Golden-section search over ln T in [ln 0.05, ln 20] (the loss is
        // convex in 1/T).
        let (mut lo, mut hi) = (0.05f64.ln(), 20f64.ln());
        let ratio = (5f64.sqrt() - 1.0) / 2.0;
        for _ in 0..60 {
            let a = hi - ratio * (hi - lo);
            let b = lo + ratio * (hi - lo);
            if log_loss(a) <= log_loss(b) {
                hi = b;
            } else {
                lo = a;
            }
        }
        Ok(((lo + hi) / 2.0).exp() as f32)
    }

    /// Every row of `rows` read once, as the members that read the most
    /// read it (the plain z-scores are a prefix of the read with squares),
    /// so that each member only projects.
    fn read_rows(&self, rows: &[Vec<f32>]) -> Vec<Vec<f32>> {
        let squares = self.members.iter().any(|m| m.squares);
        rows.iter()
            .map(|row| self.features.apply(row, squares))
            .collect()
    }

    /// `member`'s projection of a row read by [`FittedLearner::read_rows`].
    fn project(&self, member: &Member, read: &[f32]) -> Vec<f32> {
        let z = &read[..self.features.width(member.squares).min(read.len())];
        member
            .projection
            .chunks_exact(z.len())
            .map(|a| a.iter().zip(z).map(|(p, v)| p * v).sum())
            .collect()
    }

    /// Reads every member's context through the model once, as one batch
    /// of sequences: the projected rows `A x_i` of its context with the
    /// member's labels of their classes.
    fn read_contexts(&mut self) -> Result<()> {
        let n_x = self.learner.run.n_x;
        let len = self.context_rows();
        let mut inputs = Vec::with_capacity(self.members.len() * len * n_x);
        let mut labels = Vec::with_capacity(self.members.len() * len);
        let mut query_statistics = Vec::with_capacity(self.members.len());
        let reads = self.read_rows(&self.x);
        for member in &self.members {
            let mut rows: Vec<Vec<f32>> = member
                .context
                .iter()
                .map(|&i| self.project(member, &reads[i]))
                .collect();
            // A learner trained on per-sequence feature statistics reads
            // its inputs z-scored by the context's statistics.
            let statistics = (self.learner.run.config.data.feature_normalization
                == FeatureNormalization::PerSequence
                && !rows.is_empty())
            .then(|| FeatureStatistics::over(&rows.concat(), n_x));
            if let Some(statistics) = &statistics {
                rows.iter_mut().for_each(|row| statistics.apply(row));
            }
            inputs.extend(rows.concat());
            labels.extend(
                member
                    .context
                    .iter()
                    .map(|&i| member.label_of[self.y[i]] as u32),
            );
            query_statistics.push(statistics);
        }
        let m = self.members.len();
        let inputs = Tensor::from_vec(inputs, (m, len, n_x), &Device::Cpu)?;
        let labels = Tensor::from_vec(labels, (m, len), &Device::Cpu)?;
        self.cache = Some(self.learner.run.model.read_context(&inputs, &labels)?);
        self.query_statistics = query_statistics;
        Ok(())
    }

    /// Class probabilities of every row of `x` (rows × classes), averaged
    /// over the ensemble. The members' contexts were read at fit, so a row
    /// costs one position per member (the Transformer's KV cache), all
    /// members in one pass.
    pub fn predict_proba(&self, x: &[Vec<f32>]) -> Result<Vec<Vec<f32>>> {
        self.predict_proba_telling(x, &|_, _| {})
    }

    /// [`FittedLearner::predict_proba`], telling `progress` (rows done,
    /// rows in all) after every chunk of `chunk_size` rows.
    pub fn predict_proba_telling(
        &self,
        x: &[Vec<f32>],
        progress: &dyn Fn(usize, usize),
    ) -> Result<Vec<Vec<f32>>> {
        let d = self.features.features();
        if let Some((i, row)) = x.iter().enumerate().find(|(_, r)| r.len() != d) {
            return Err(RunError::Learner(format!(
                "test row {i} has {} features, the training rows {d}",
                row.len()
            )));
        }
        let Some(cache) = &self.cache else {
            return Err(RunError::Learner("the learner has read no context".into()));
        };
        let model = self.learner.run.model.as_ref();
        let n_x = self.learner.run.n_x;
        let mut out = vec![vec![0f32; self.classes]; x.len()];
        for (chunk_start, chunk) in x
            .chunks(self.learner.options.chunk_size)
            .enumerate()
            .map(|(c, rows)| (c * self.learner.options.chunk_size, rows))
        {
            let mut queries = Vec::with_capacity(self.members.len() * chunk.len() * n_x);
            let reads = self.read_rows(chunk);
            for (member, statistics) in self.members.iter().zip(&self.query_statistics) {
                for read in &reads {
                    let mut projected = self.project(member, read);
                    if let Some(statistics) = statistics {
                        statistics.apply(&mut projected);
                    }
                    queries.extend(projected);
                }
            }
            let queries = Tensor::from_vec(
                queries,
                (self.members.len(), chunk.len(), n_x),
                &Device::Cpu,
            )?;
            let logits: Vec<Vec<Vec<f32>>> = model.query_logits(cache, &queries)?.to_vec3()?;
            for (member, member_logits) in self.members.iter().zip(&logits) {
                for (r, logits) in member_logits.iter().enumerate() {
                    let row = &mut out[chunk_start + r];
                    if self.classes <= NUM_CLASSES {
                        // Softmax over the labels this member gave the classes.
                        let chosen: Vec<f32> = (0..self.classes)
                            .map(|c| logits[member.label_of[c]] / self.temperature)
                            .collect();
                        let max = chosen.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                        let exp: Vec<f32> = chosen.iter().map(|v| (v - max).exp()).collect();
                        // Summed in the learner's label order, so that the
                        // numbering of the classes cannot change a single bit.
                        let mut by_label: Vec<(usize, f32)> = (0..self.classes)
                            .map(|c| (member.label_of[c], exp[c]))
                            .collect();
                        by_label.sort_by_key(|&(label, _)| label);
                        let sum: f32 = by_label.iter().map(|&(_, e)| e).sum();
                        for (c, e) in exp.iter().enumerate() {
                            row[c] += e / sum / self.members.len() as f32;
                        }
                    } else {
                        // An output code: every label is in use; a class
                        // gets its label's probability shared among the
                        // label's classes, and the members' log
                        // probabilities add up (normalised below).
                        let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                        let exp: Vec<f32> = logits
                            .iter()
                            .map(|v| ((v - max) / self.temperature).exp())
                            .collect();
                        let sum: f32 = exp.iter().sum();
                        for (c, score) in row.iter_mut().enumerate() {
                            let label = member.label_of[c];
                            *score += (exp[label] / sum / member.group_size[label] as f32).ln();
                        }
                    }
                }
            }
            progress(chunk_start + chunk.len(), x.len());
        }
        if self.classes > NUM_CLASSES {
            for row in &mut out {
                let max = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                row.iter_mut().for_each(|v| *v = (*v - max).exp());
                let sum: f32 = row.iter().sum();
                row.iter_mut().for_each(|v| *v /= sum);
            }
        }
        Ok(out)
    }

    /// The most probable class of every row of `x`.
    pub fn predict(&self, x: &[Vec<f32>]) -> Result<Vec<usize>> {
        Ok(most_probable(&self.predict_proba(x)?))
    }
}

/// The most probable class of every probability row (the first on ties).
pub fn most_probable(proba: &[Vec<f32>]) -> Vec<usize> {
    proba
        .iter()
        .map(|p| {
            p.iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1).then(b.0.cmp(&a.0)))
                .map_or(0, |(c, _)| c)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use gpicl_kernels::rng::Rng;

    fn table(rows: usize, seed: u64) -> (Vec<Vec<f32>>, Vec<usize>) {
        let mut rng = Rng::new(seed);
        (0..rows)
            .map(|i| {
                let class = i % 3;
                let row = (0..6)
                    .map(|j| rng.normal() as f32 + if j == class { 2.0 } else { 0.0 })
                    .collect();
                (row, class)
            })
            .unzip()
    }

    #[test]
    fn squared_members_read_twice_the_features_and_clipping_bounds_an_outlying_query() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/gpicl-quickstart-7px");
        let load = |squares, clip| {
            Learner::load(
                &dir,
                PredictOptions {
                    ensemble: 4,
                    squares,
                    clip,
                    ..PredictOptions::default()
                },
            )
            .unwrap()
        };
        let (x, y) = table(60, 1);
        let half = load(Squares::Half, 0.0);
        let fitted = half.fit(&x, &y).unwrap();
        let widths: Vec<usize> = fitted
            .members
            .iter()
            .map(|m| m.projection.len() / half.run.n_x)
            .collect();
        assert_eq!(widths, [6, 12, 6, 12]);
        // Two queries whose first feature lies far beyond ±1 standard
        // deviation read alike once clipped at 1, and differ unclipped.
        let mut far = x[0].clone();
        far[0] = 1e4;
        let mut farther = x[0].clone();
        farther[0] = 1e6;
        let clipped = load(Squares::Half, 1.0);
        let fitted = clipped.fit(&x, &y).unwrap();
        assert_eq!(
            fitted.predict_proba(&[far.clone()]).unwrap(),
            fitted.predict_proba(&[farther.clone()]).unwrap()
        );
        let free = load(Squares::None, 0.0);
        let fitted = free.fit(&x, &y).unwrap();
        assert_ne!(
            fitted.predict_proba(&[far]).unwrap(),
            fitted.predict_proba(&[farther]).unwrap()
        );
    }

    #[test]
    fn filled_contexts_are_full_repeat_each_row_once_before_any_twice_and_still_cover_every_row() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/gpicl-quickstart-7px");
        let learner = Learner::load(
            &dir,
            PredictOptions {
                ensemble: 3,
                fill_contexts: true,
                calibrate: true,
                ..PredictOptions::default()
            },
        )
        .unwrap();
        // Fewer rows than the context holds: read again, in fresh orders.
        let (x, y) = table(10, 5);
        let fitted = learner.fit(&x, &y).unwrap();
        for member in &fitted.members {
            assert_eq!(member.context.len(), 99);
            let mut first: Vec<usize> = member.context[..10].to_vec();
            first.sort_unstable();
            assert_eq!(first, (0..10).collect::<Vec<_>>());
            for row in 0..10 {
                let times = member.context.iter().filter(|&&r| r == row).count();
                assert!((9..=10).contains(&times), "row {row} read {times} times");
            }
        }
        let t = fitted.temperature();
        assert!(t.is_finite() && t > 0.0, "{t}");
        // More rows than it holds: every context full of distinct rows,
        // every row in some context.
        let (x, y) = table(150, 6);
        let fitted = learner.fit(&x, &y).unwrap();
        let mut seen = [false; 150];
        for member in &fitted.members {
            let mut rows = member.context.clone();
            rows.sort_unstable();
            rows.dedup();
            assert_eq!((member.context.len(), rows.len()), (99, 99));
            rows.iter().for_each(|&r| seen[r] = true);
        }
        assert!(seen.iter().all(|&s| s));
    }

    #[test]
    fn the_members_contexts_cover_every_training_row_in_parts_holding_every_class() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/gpicl-quickstart-7px");
        let learner = Learner::load(
            &dir,
            PredictOptions {
                ensemble: 2,
                ..PredictOptions::default()
            },
        )
        .unwrap();
        let (x, y) = table(250, 3);
        let fitted = learner.fit(&x, &y).unwrap();
        assert_eq!(
            fitted.members(),
            3,
            "250 rows need 3 contexts of at most 99"
        );
        let mut seen = vec![false; 250];
        for member in &fitted.members {
            assert!(member.context.len() <= 99 && member.context.len() >= 84);
            for class in 0..3 {
                assert!(member.context.iter().any(|&i| y[i] == class));
            }
            member.context.iter().for_each(|&i| seen[i] = true);
        }
        assert!(seen.iter().all(|&s| s), "a training row is in no context");
        // Rows that fit one context keep the ensemble asked for.
        assert_eq!(learner.fit(&x[..99], &y[..99]).unwrap().members(), 2);
    }

    #[test]
    fn beyond_ten_classes_each_member_shares_labels_in_balanced_groups() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/gpicl-quickstart-7px");
        let learner = Learner::load(&dir, PredictOptions::default()).unwrap();
        let x: Vec<Vec<f32>> = (0..46).map(|i| vec![i as f32, (i % 7) as f32]).collect();
        let y: Vec<usize> = (0..46).map(|i| i % 23).collect();
        let fitted = learner.fit(&x, &y).unwrap();
        assert_eq!(fitted.members(), 8);
        let mut codes = std::collections::BTreeSet::new();
        for class in 0..23 {
            codes.insert(
                fitted
                    .members
                    .iter()
                    .map(|m| m.label_of[class])
                    .collect::<Vec<_>>(),
            );
        }
        assert_eq!(codes.len(), 23, "two classes share every member's label");
        for member in &fitted.members {
            let sizes: Vec<usize> = member.group_size.clone();
            assert_eq!(sizes.iter().sum::<usize>(), 23);
            assert!(sizes.iter().all(|&n| n == 2 || n == 3), "{sizes:?}");
        }
    }

    #[test]
    fn progress_is_told_after_every_chunk_of_queries() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/gpicl-quickstart-7px");
        let options = PredictOptions {
            ensemble: 2,
            chunk_size: 4,
            ..PredictOptions::default()
        };
        let (x, y) = table(30, 5);
        let (queries, _) = table(10, 6);
        let learner = Learner::load(&dir, options).unwrap();
        let fitted = learner.fit(&x, &y).unwrap();
        let calls = std::cell::RefCell::new(Vec::new());
        let told = fitted
            .predict_proba_telling(&queries, &|done, all| calls.borrow_mut().push((done, all)))
            .unwrap();
        assert_eq!(calls.into_inner(), [(4, 10), (8, 10), (10, 10)]);
        assert_eq!(told, fitted.predict_proba(&queries).unwrap());
    }

    #[test]
    fn calibration_fits_a_temperature_on_the_context_and_never_reorders_a_members_classes() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/gpicl-quickstart-7px");
        let options = |calibrate| PredictOptions {
            ensemble: 1,
            calibrate,
            ..PredictOptions::default()
        };
        let (x, y) = table(60, 5);
        let (queries, _) = table(20, 6);
        let raw = Learner::load(&dir, options(false)).unwrap();
        let raw = raw.fit(&x, &y).unwrap();
        assert_eq!(raw.temperature(), 1.0);
        let calibrated = Learner::load(&dir, options(true)).unwrap();
        let calibrated = calibrated.fit(&x, &y).unwrap();
        let t = calibrated.temperature();
        assert!(
            t.is_finite() && (0.05..=20.0).contains(&t) && t != 1.0,
            "{t}"
        );
        let (p_raw, p_cal) = (
            raw.predict_proba(&queries).unwrap(),
            calibrated.predict_proba(&queries).unwrap(),
        );
        assert_ne!(p_raw, p_cal);
        assert_eq!(most_probable(&p_raw), most_probable(&p_cal));
        // The fitted temperature does at least as well on the context's
        // held-out predictions as none (T = 1) and as its neighbours.
        let context_loss = |t: f32| {
            let learner = Learner::load(&dir, options(false)).unwrap();
            let mut f = learner.fit(&x, &y).unwrap();
            f.temperature = t;
            // Held-out context predictions of the second half, scored at t.
            let logits: Vec<Vec<Vec<f32>>> = f
                .cache
                .as_ref()
                .unwrap()
                .context_logits()
                .unwrap()
                .to_vec3()
                .unwrap();
            let member = &f.members[0];
            let p = member.context.len();
            let mut loss = 0f64;
            for (pos, &row) in member.context.iter().enumerate().skip(p / 2) {
                let z: Vec<f64> = (0..f.classes)
                    .map(|c| logits[0][pos][member.label_of[c]] as f64 / t as f64)
                    .collect();
                let max = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let sum: f64 = z.iter().map(|v| (v - max).exp()).sum();
                loss += sum.ln() - (z[f.y[row]] - max);
            }
            loss
        };
        let fitted_loss = context_loss(t);
        for other in [1.0, t * 0.8, t * 1.25] {
            assert!(
                fitted_loss <= context_loss(other) + 1e-9,
                "T = {t} vs {other}"
            );
        }
    }

    #[test]
    fn each_query_is_answered_alone_whatever_else_is_asked_with_it() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/gpicl-quickstart-7px");
        let batched = Learner::load(&dir, PredictOptions::default()).unwrap();
        let one_by_one = Learner::load(
            &dir,
            PredictOptions {
                chunk_size: 1,
                ..PredictOptions::default()
            },
        )
        .unwrap();
        let (x, y) = table(30, 1);
        let (queries, truth) = table(12, 2);
        let together = batched
            .fit(&x, &y)
            .unwrap()
            .predict_proba(&queries)
            .unwrap();
        let alone = one_by_one
            .fit(&x, &y)
            .unwrap()
            .predict_proba(&queries)
            .unwrap();
        for (a, b) in together.iter().flatten().zip(alone.iter().flatten()) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
        // And the context is used: the classes are told apart.
        let correct = most_probable(&together)
            .iter()
            .zip(&truth)
            .filter(|(p, t)| p == t)
            .count();
        assert!(correct >= 8, "{correct} of 12");
    }
}
