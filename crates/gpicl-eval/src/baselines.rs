//! Learners that are not meta-trained, evaluated by the same protocol.

use gpicl_kernels::rng::{stream, Rng};
use gpicl_kernels::{Device, Tensor};
use gpicl_models::init::Initializer;
use gpicl_models::online::{init_learner, unroll, LearnerSpec, LearnerWeights};
use gpicl_models::{tokens, ModelKind, OnlineLearnerConfig, ParamStore, SequenceModel};

/// The SGD baseline of Table 2: for every sequence a freshly initialised
/// MLP (`cfg.learner_hidden` ReLU units) that predicts each example, then
/// takes one Adam step (`cfg.learner_lr`) on it.
///
/// Sequence `i` of every forward call starts from the weights of stream
/// `(seed, [BASELINE, i])`, so results are reproducible.
pub struct SgdBaseline {
    spec: LearnerSpec,
    seed: u64,
    classes: usize,
    features: usize,
    device: Device,
    params: ParamStore,
}

impl SgdBaseline {
    /// The baseline for examples of `features` features.
    pub fn new(
        cfg: &OnlineLearnerConfig,
        features: usize,
        classes: usize,
        seed: u64,
        device: &Device,
    ) -> Self {
        Self {
            spec: LearnerSpec::from_config(cfg),
            seed,
            classes,
            features,
            device: device.clone(),
            params: ParamStore::new(),
        }
    }

    fn fresh_weights(&self, sequences: usize) -> gpicl_models::Result<LearnerWeights> {
        let mut parts: [Vec<Tensor>; 4] = Default::default();
        for i in 0..sequences {
            let mut init = Initializer::new(
                Rng::from_stream(self.seed, &[stream::BASELINE, i as u64]),
                &self.device,
            );
            for (part, w) in parts.iter_mut().zip(init_learner(
                &mut init,
                self.features,
                self.spec.hidden,
                self.classes,
            )?) {
                part.push(w);
            }
        }
        let [w1, b1, w2, b2] = parts.map(|p| Tensor::stack(&p, 0));
        Ok(LearnerWeights {
            w1: w1?,
            b1: b1?,
            w2: w2?,
            b2: b2?,
        })
    }
}

impl SequenceModel for SgdBaseline {
    fn forward(&self, inputs: &Tensor, labels: &Tensor) -> gpicl_models::Result<Tensor> {
        tokens::check_examples(inputs, labels, self.features, self.classes, usize::MAX)?;
        let start = self.fresh_weights(inputs.dim(0)?)?;
        unroll(inputs, labels, &start, &self.spec, self.classes)
    }

    fn params(&self) -> &ParamStore {
        &self.params
    }

    fn state_size(&self, _seq_len: usize) -> usize {
        3 * (self.features * self.spec.hidden
            + self.spec.hidden
            + self.spec.hidden * self.classes
            + self.classes)
    }

    /// The online learner MAML meta-trains, here never meta-trained.
    fn kind(&self) -> ModelKind {
        ModelKind::Maml
    }

    fn features(&self) -> usize {
        self.features
    }

    fn classes(&self) -> usize {
        self.classes
    }
}
