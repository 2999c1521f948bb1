//! An online learner in a model's clothing: a one-hidden-layer MLP trained
//! by one Adam step per example along the sequence. With meta-learned
//! initial weights it is MAML; with fresh random weights per sequence, the
//! SGD baseline (`gpicl-eval`).

use crate::error::{at_least_one, ModelError, Result};
use crate::init::Initializer;
use crate::kind::ModelKind;
use crate::params::ParamStore;
use crate::{tokens, SequenceModel};
use gpicl_kernels::rng::{stream, Rng};
use gpicl_kernels::{composed, Device, KernelOptions, Tensor};

/// Options of the online learner, for MAML and the SGD baseline
/// (`model.*` keys of `config.toml`).
#[derive(Clone, Debug, PartialEq)]
pub struct OnlineLearnerConfig {
    /// Hidden ReLU units (`model.learner_hidden`). Default 128.
    pub hidden: usize,
    /// Inner Adam learning rate (`model.learner_lr`). Default 1e-3.
    pub lr: f64,
}

impl Default for OnlineLearnerConfig {
    fn default() -> Self {
        Self {
            hidden: 128,
            lr: 1e-3,
        }
    }
}

impl OnlineLearnerConfig {
    /// Checks that every option is usable.
    pub fn validate(&self) -> Result<()> {
        at_least_one("learner_hidden", self.hidden)?;
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return Err(ModelError::Config {
                option: "learner_lr",
                reason: format!("must be a positive number, got {}", self.lr),
            });
        }
        Ok(())
    }
}

/// Hyperparameters of the inner learner.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LearnerSpec {
    /// Hidden ReLU units.
    pub hidden: usize,
    /// Inner Adam learning rate.
    pub lr: f64,
    /// Inner Adam β1 (PyTorch's default 0.9).
    pub beta1: f64,
    /// Inner Adam β2 (PyTorch's default 0.999).
    pub beta2: f64,
    /// Inner Adam ε (PyTorch's default 1e-8).
    pub eps: f64,
}

impl LearnerSpec {
    /// The inner learner its options describe.
    pub fn from_config(cfg: &OnlineLearnerConfig) -> Self {
        Self {
            hidden: cfg.hidden,
            lr: cfg.lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }
}

/// Initial weights of the learner, one set per sequence (`[b, …]`) or one
/// shared set broadcast over the batch.
pub struct LearnerWeights {
    /// `[b, n_x, hidden]`.
    pub w1: Tensor,
    /// `[b, 1, hidden]`.
    pub b1: Tensor,
    /// `[b, hidden, classes]`.
    pub w2: Tensor,
    /// `[b, 1, classes]`.
    pub b2: Tensor,
}

/// Draws learner weights like every other linear layer: truncated normal
/// with std `1/sqrt(fan_in)`, zero biases.
pub fn init_learner(
    init: &mut Initializer,
    n_x: usize,
    hidden: usize,
    classes: usize,
) -> Result<[Tensor; 4]> {
    Ok([
        init.truncated_normal(&[n_x, hidden], 1.0 / (n_x as f64).sqrt()),
        init.zeros(&[1, hidden]),
        init.truncated_normal(&[hidden, classes], 1.0 / (hidden as f64).sqrt()),
        init.zeros(&[1, classes]),
    ])
}

/// Runs the online learner over examples (`inputs` `[b, t, n_x]`, `labels`
/// `[b, t]` below `classes`): at each position predict `x_t`, then take one
/// Adam step on `(x_t, y_t)`. Every operation is a differentiable tensor
/// op, so gradients flow back into the initial weights through all updates
/// (MAML).
pub fn unroll(
    inputs: &Tensor,
    labels: &Tensor,
    start: &LearnerWeights,
    spec: &LearnerSpec,
    classes: usize,
) -> Result<Tensor> {
    let (b, t, _) = inputs.dims3()?;
    let expand = |w: &Tensor| -> Result<Tensor> {
        let dims = w.dims();
        Ok(if dims.len() == 2 {
            w.unsqueeze(0)?.broadcast_as((b, dims[0], dims[1]))?
        } else {
            w.clone()
        })
    };
    let mut weights = [
        expand(&start.w1)?,
        expand(&start.b1)?,
        expand(&start.w2)?,
        expand(&start.b2)?,
    ];
    let mut first: Vec<Tensor> = weights
        .iter()
        .map(|w| w.zeros_like())
        .collect::<candle_core::Result<_>>()?;
    let mut second = first.clone();
    let (b1, b2) = (spec.beta1, spec.beta2);
    let mut outputs = Vec::with_capacity(t);
    for step in 0..t {
        let xt = inputs.narrow(1, step, 1)?; // [b, 1, n_x]
        let pre = xt.matmul(&weights[0])?.add(&weights[1])?;
        let hidden = pre.relu()?;
        let logits = hidden.matmul(&weights[2])?.add(&weights[3])?;
        outputs.push(logits.clone());
        if step + 1 == t {
            break;
        }
        // Gradient of the cross-entropy of this one example.
        let target = tokens::one_hot(&labels.narrow(1, step, 1)?, classes, logits.dtype())?;
        let d_logits = (composed::softmax_last_dim(&logits)? - target)?;
        let g_w2 = hidden.transpose(1, 2)?.matmul(&d_logits)?;
        let active = pre.gt(0.0)?.to_dtype(pre.dtype())?;
        let d_pre = (d_logits.matmul(&weights[2].transpose(1, 2)?)? * active)?;
        let g_w1 = xt.transpose(1, 2)?.matmul(&d_pre)?;
        let grads = [g_w1, d_pre, g_w2, d_logits];
        let k = (step + 1) as i32;
        let (c1, c2) = (1.0 - b1.powi(k), 1.0 - b2.powi(k));
        for i in 0..4 {
            first[i] = ((&first[i] * b1)? + (&grads[i] * (1.0 - b1))?)?;
            second[i] = ((&second[i] * b2)? + (grads[i].sqr()? * (1.0 - b2))?)?;
            // A tiny eps_root keeps sqrt differentiable where v = 0.
            let denom = ((&second[i] / c2)? + 1e-16)?.sqrt()? + spec.eps;
            let update = ((&first[i] / c1)? / denom?)?;
            weights[i] = (&weights[i] - (update * spec.lr)?)?;
        }
    }
    Ok(Tensor::cat(&outputs, 1)?)
}

/// MAML: the online learner with meta-learned initial weights.
pub struct Maml {
    params: ParamStore,
    spec: LearnerSpec,
    start: LearnerWeights,
    classes: usize,
    features: usize,
    options: KernelOptions,
}

impl Maml {
    /// Builds MAML with `cfg.hidden` units and inner rate `cfg.lr` for
    /// examples of `features` features; its training loss runs with
    /// `options`.
    pub fn new(
        cfg: &OnlineLearnerConfig,
        features: usize,
        classes: usize,
        seed: u64,
        device: &Device,
        options: KernelOptions,
    ) -> Result<Self> {
        cfg.validate()?;
        let spec = LearnerSpec::from_config(cfg);
        let mut init = Initializer::new(Rng::from_stream(seed, &[stream::INIT]), device);
        let mut params = ParamStore::new();
        let [w1, b1, w2, b2] = init_learner(&mut init, features, spec.hidden, classes)?;
        let start = LearnerWeights {
            w1: params.insert("learner.fc1.weight", w1)?,
            b1: params.insert("learner.fc1.bias", b1)?,
            w2: params.insert("learner.head.weight", w2)?,
            b2: params.insert("learner.head.bias", b2)?,
        };
        Ok(Self {
            params,
            spec,
            start,
            classes,
            features,
            options,
        })
    }
}

impl SequenceModel for Maml {
    /// Learns from the examples themselves: no token is built.
    fn forward(&self, inputs: &Tensor, labels: &Tensor) -> Result<Tensor> {
        tokens::check_examples(inputs, labels, self.features, self.classes, usize::MAX)?;
        unroll(inputs, labels, &self.start, &self.spec, self.classes)
    }

    fn params(&self) -> &ParamStore {
        &self.params
    }

    fn kernel_options(&self) -> KernelOptions {
        self.options
    }

    /// The learner's weights and Adam moments: everything carried along.
    fn state_size(&self, _seq_len: usize) -> usize {
        3 * self.params.count()
    }

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;

    fn small(lr: f64) -> Maml {
        let cfg = OnlineLearnerConfig { hidden: 4, lr };
        Maml::new(&cfg, 3, 3, 1, &Device::Cpu, KernelOptions::default()).unwrap()
    }

    #[test]
    fn maml_meta_gradient_flows_into_the_initial_weights() {
        testing::assert_every_parameter_gets_a_gradient(&small(0.1));
    }

    #[test]
    fn predictions_never_depend_on_later_inputs_or_labels() {
        testing::assert_causal(&small(0.1));
    }

    #[test]
    fn the_first_prediction_uses_the_initial_weights_and_later_ones_learn() {
        let m = small(0.1);
        // One repeated example with label 2: after a few Adam steps the
        // learner predicts it far better than its initial weights did.
        let data: Vec<f32> = (0..8).flat_map(|_| [1.0f32, -0.5, 0.25]).collect();
        let inputs = Tensor::from_vec(data, (1, 8, 3), &Device::Cpu).unwrap();
        let labels = Tensor::from_vec(vec![2u32; 8], (1, 8), &Device::Cpu).unwrap();
        let logits = m.forward(&inputs, &labels).unwrap();
        let log_p = composed::log_softmax_last_dim(&logits)
            .unwrap()
            .squeeze(0)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        assert!(
            log_p[7][2] > log_p[0][2] + 0.5,
            "{} vs {}",
            log_p[7][2],
            log_p[0][2]
        );
        assert_eq!(m.state_size(8), 3 * m.param_count());
    }
}
