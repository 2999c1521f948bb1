//! How a learner's context is dealt: class indices, class-balanced
//! subsets, covering parts of at most one context each, and the ensemble
//! members (projection, label assignment, context order) of
//! [`super::FittedLearner`].

use gpicl_kernels::rng::{stream, Rng};
use gpicl_tasks::NUM_CLASSES;

/// Class names in order of first appearance and each label's index into
/// them: the numbering `fit` expects.
pub fn index_classes(labels: &[String]) -> (Vec<String>, Vec<usize>) {
    let mut names: Vec<String> = Vec::new();
    let indices = labels
        .iter()
        .map(|l| match names.iter().position(|n| n == l) {
            Some(i) => i,
            None => {
                names.push(l.clone());
                names.len() - 1
            }
        })
        .collect();
    (names, indices)
}

/// `n` of the rows labelled `y`, drawn with `seed`: classes take turns (in
/// a random order) so that every class is represented once `n` reaches the
/// number of classes. Returns row indices; all rows when `n ≥ y.len()`.
pub fn stratified_subset(y: &[usize], n: usize, seed: u64) -> Vec<usize> {
    let mut rng = Rng::from_stream(seed, &[stream::PREDICT, u64::MAX]);
    let shuffled = rng.permutation(y.len());
    let mut queues: Vec<(usize, Vec<usize>)> = Vec::new();
    for &row in &shuffled {
        match queues.iter_mut().find(|(c, _)| *c == y[row]) {
            Some((_, rows)) => rows.push(row),
            None => queues.push((y[row], vec![row])),
        }
    }
    let mut picked = Vec::with_capacity(n.min(y.len()));
    let mut depth = 0;
    while picked.len() < n.min(y.len()) {
        for (_, rows) in &queues {
            if let Some(&row) = rows.get(depth) {
                if picked.len() < n {
                    picked.push(row);
                }
            }
        }
        depth += 1;
    }
    picked
}

/// The training rows dealt into `parts` parts of equal size (at most one
/// context each), class by class so that every part holds every class in
/// proportion: every row is in some part; parts one short are topped up
/// with a row of the next part. Round `round` deals afresh.
pub(super) fn covering_parts(y: &[usize], parts: usize, seed: u64, round: u64) -> Vec<Vec<usize>> {
    let mut rng = Rng::from_stream(seed, &[stream::PREDICT, u64::MAX - 1, round]);
    let mut by_class: Vec<usize> = rng.permutation(y.len());
    // Stable: within a class the random order stays.
    by_class.sort_by_key(|&row| y[row]);
    let mut dealt: Vec<Vec<usize>> = vec![Vec::new(); parts];
    for (i, row) in by_class.into_iter().enumerate() {
        dealt[i % parts].push(row);
    }
    let size = dealt[0].len();
    for part in 1..parts {
        if dealt[part].len() < size {
            let extra = dealt[(part + 1) % parts][0];
            dealt[part].push(extra);
        }
    }
    dealt
}

/// Which ensemble members read the squared z-scores beside the z-scores
/// (`2d` inputs to their projection instead of `d`,
/// [`gpicl_tasks::table_features`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Squares {
    /// None: every member reads the `d` z-scores. The default for images.
    #[default]
    None,
    /// Every second member (members 1, 3, 5, …); the others read the
    /// z-scores only. Measured best on tables (docs/predict.md).
    Half,
    /// Every member.
    All,
}

impl Squares {
    /// Whether member `m` reads the squares.
    pub fn for_member(self, m: usize) -> bool {
        match self {
            Squares::None => false,
            Squares::Half => m % 2 == 1,
            Squares::All => true,
        }
    }
}

/// `part` (one member's share of the rows, [`covering_parts`]) topped up
/// to `context_len` rows with rows of the `other` parts, drawn at random:
/// the member reads a full context and still every row is some member's.
pub(super) fn topped_up(
    mut part: Vec<usize>,
    other: &[Vec<usize>],
    context_len: usize,
    seed: u64,
    m: usize,
) -> Vec<usize> {
    let others: Vec<usize> = other.concat();
    let mut rng = Rng::from_stream(seed, &[stream::PREDICT, u64::MAX - 2, m as u64]);
    let need = context_len.saturating_sub(part.len()).min(others.len());
    part.extend(
        rng.permutation(others.len())
            .into_iter()
            .take(need)
            .map(|i| others[i]),
    );
    part
}

/// One ensemble member: a projection, a label assignment, a context.
pub(super) struct Member {
    /// `n_x × w`, row-major, where `w` is the width of what the member
    /// reads of a row (`d` z-scores, or `2d` with their squares).
    pub(super) projection: Vec<f32>,
    /// Whether the member reads the squared z-scores too.
    pub(super) squares: bool,
    /// `label_of[c]`: the learner's label for class `c` (shared by several
    /// classes when there are more than 10: an output code).
    pub(super) label_of: Vec<usize>,
    /// `group_size[label]`: classes that share each label.
    pub(super) group_size: Vec<usize>,
    /// Training rows in context order.
    pub(super) context: Vec<usize>,
}

impl Member {
    /// Draws member `m` (its context: a random order of `rows`, or of all
    /// rows cut to `context_len`; with `repeat`, fewer rows than
    /// `context_len` are read again in fresh orders, each once before any
    /// twice, until the context is full). Learner labels go to classes in the order
    /// they first appear in the member's context, so what the model is shown
    /// does not depend on how the classes are numbered or named; beyond 10
    /// classes that order deals the classes onto the labels in turn.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn draw(
        seed: u64,
        m: usize,
        d: usize,
        squares: bool,
        n_x: usize,
        y: &[usize],
        classes: usize,
        context_len: usize,
        rows: Option<Vec<usize>>,
        repeat: bool,
    ) -> Self {
        let mut rng = Rng::from_stream(seed, &[stream::PREDICT, m as u64]);
        let std = 1.0 / (d as f64).sqrt();
        let projection = (0..n_x * d).map(|_| (rng.normal() * std) as f32).collect();
        let labels = rng.permutation(NUM_CLASSES);
        let context = match rows {
            Some(rows) => rng
                .permutation(rows.len())
                .into_iter()
                .map(|i| rows[i])
                .collect(),
            None => {
                let mut context = rng.permutation(y.len());
                // Drawn only when repeating, so that a member without
                // repeats draws what it drew before.
                while repeat && !y.is_empty() && context.len() < context_len {
                    context.extend(rng.permutation(y.len()));
                }
                context.truncate(context_len);
                context
            }
        };
        let mut order: Vec<usize> = Vec::with_capacity(classes);
        for &i in &context {
            if !order.contains(&y[i]) {
                order.push(y[i]);
            }
        }
        // Classes absent from this member's context (a subset) come last.
        order.extend(
            (0..classes)
                .filter(|c| !order.contains(c))
                .collect::<Vec<_>>(),
        );
        let mut label_of = vec![0; classes];
        let mut group_size = vec![0; NUM_CLASSES];
        for (rank, &class) in order.iter().enumerate() {
            label_of[class] = labels[rank % NUM_CLASSES];
            group_size[label_of[class]] += 1;
        }
        Self {
            projection,
            squares,
            label_of,
            group_size,
            context,
        }
    }
}
