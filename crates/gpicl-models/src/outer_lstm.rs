//! The outer-product LSTM of `gpicl-method.md` §5: an LSTM whose cell is
//! an `H × H` matrix per head, written with outer products of gate vectors.

use crate::activations::{sigmoid, softplus};
use crate::error::{at_least_one, Result};
use crate::init::Initializer;
use crate::kind::ModelKind;
use crate::linear::Linear;
use crate::params::ParamStore;
use crate::{tokens, SequenceModel};
use gpicl_kernels::op::outer_lstm::outer_lstm_recurrence;
use gpicl_kernels::rng::{stream, Rng};
use gpicl_kernels::{DType, Device, KernelOptions, Tensor};

/// Options of the outer-product LSTM (`model.*` keys of `config.toml`).
#[derive(Clone, Debug, PartialEq)]
pub struct OuterLstmConfig {
    /// Heads `n` (`model.outer_heads`). Default 1.
    pub heads: usize,
    /// Size `H` of each head, whose cell is `H × H` (`model.hidden`).
    /// Default 256.
    pub head_size: usize,
}

impl Default for OuterLstmConfig {
    fn default() -> Self {
        Self {
            heads: 1,
            head_size: 256,
        }
    }
}

impl OuterLstmConfig {
    /// Checks that every option is usable.
    pub fn validate(&self) -> Result<()> {
        at_least_one("hidden", self.head_size)?;
        at_least_one("outer_heads", self.heads)
    }
}

/// Per step, with `z = [u_t ; h_{t−1}]` and `G = Linear(8·H·n)(z)` split per
/// head into `k1` (3H), `k2` (3H), `q` (H), `o` (H), and `s = softplus(κ)`:
/// for each gate `x ∈ {i, g, f}`, `x = (tanh(k1_x)·s) ⊗ tanh(k2_x)`;
/// `C_t = σ(f + 1) ⊙ C_{t−1} + σ(i) ⊙ g`; `h_t = σ(o) ⊙ tanh(C_tᵀ q)`.
pub struct OuterLstm {
    params: ParamStore,
    enc1: Linear,
    enc2: Linear,
    gates: Linear,
    kappa: Tensor,
    head: Linear,
    heads: usize,
    size: usize,
    features: usize,
    classes: usize,
    options: KernelOptions,
}

/// One recurrent step on explicit state, shared by the model and its tests.
pub(crate) struct OuterState {
    /// `[b, heads, H, H]`.
    pub cell: Tensor,
    /// `[b, heads · H]`.
    pub hidden: Tensor,
}

impl OuterLstm {
    /// Builds the model with `cfg.heads` heads of size `cfg.head_size`,
    /// for examples of `features` features, running its ops with `options`.
    pub fn new(
        cfg: &OuterLstmConfig,
        features: usize,
        classes: usize,
        seed: u64,
        device: &Device,
        options: KernelOptions,
    ) -> Result<Self> {
        cfg.validate()?;
        let mut init = Initializer::new(Rng::from_stream(seed, &[stream::INIT]), device);
        let mut params = ParamStore::new();
        let (n, size) = (cfg.heads, cfg.head_size);
        let width = n * size;
        Ok(Self {
            enc1: Linear::init(
                &mut params,
                &mut init,
                "encoder.fc1",
                tokens::width(features, classes),
                width,
            )?,
            enc2: Linear::init(&mut params, &mut init, "encoder.fc2", width, width)?,
            gates: Linear::init(&mut params, &mut init, "outer.gates", 2 * width, 8 * width)?,
            kappa: params.insert("outer.kappa", Tensor::zeros(1, DType::F32, device)?)?,
            head: Linear::init(&mut params, &mut init, "head", width, classes)?,
            params,
            heads: n,
            size,
            features,
            classes,
            options,
        })
    }

    /// The recurrence from candle ops, step by step: the path for devices
    /// without the fused kernel, and the reference it is tested against.
    pub(crate) fn forward_composed(&self, tokens: &Tensor, s: &Tensor) -> Result<Tensor> {
        let (b, t, _) = tokens.dims3()?;
        let width = self.heads * self.size;
        let mut state = OuterState {
            cell: Tensor::zeros(
                (b, self.heads, self.size, self.size),
                DType::F32,
                tokens.device(),
            )?,
            hidden: Tensor::zeros((b, width), DType::F32, tokens.device())?,
        };
        let mut outputs = Vec::with_capacity(t);
        for step in 0..t {
            // Per-step slices of the untracked tokens keep backward linear in T.
            let x = tokens.narrow(1, step, 1)?.squeeze(1)?;
            let o = self.options;
            let u = self
                .enc2
                .forward(&self.enc1.forward(&x, o)?.relu()?, o)?
                .relu()?;
            let g = self
                .gates
                .forward(&Tensor::cat(&[&u, &state.hidden], 1)?, o)?;
            state = self.step(&g, s, &state)?;
            outputs.push(state.hidden.clone());
        }
        self.head
            .forward(&Tensor::stack(&outputs, 1)?, self.options)
    }

    /// Advances the state by one step given the gate pre-activations `g`
    /// (`[b, 8·H·n]`) and the gate scale `s` (`[1]`).
    pub(crate) fn step(&self, g: &Tensor, s: &Tensor, state: &OuterState) -> Result<OuterState> {
        let (n, h) = (self.heads, self.size);
        let b = g.dim(0)?;
        let g = g.reshape((b, n, 8 * h))?;
        let k1 = g.narrow(2, 0, 3 * h)?.tanh()?.broadcast_mul(s)?;
        let k2 = g.narrow(2, 3 * h, 3 * h)?.tanh()?;
        let q = g.narrow(2, 6 * h, h)?;
        let o = g.narrow(2, 7 * h, h)?;
        let outer = |gate: usize| -> Result<Tensor> {
            let a = k1.narrow(2, gate * h, h)?.unsqueeze(3)?; // [b, n, H, 1]
            let c = k2.narrow(2, gate * h, h)?.unsqueeze(2)?; // [b, n, 1, H]
            Ok(a.broadcast_mul(&c)?)
        };
        let (input, update, forget) = (outer(0)?, outer(1)?, outer(2)?);
        let forget = sigmoid(&(forget + 1.0)?)?;
        let cell = ((forget * &state.cell)? + (sigmoid(&input)? * update)?)?;
        // read[k] = Σ_j C[j, k] q[j]
        let read = q.unsqueeze(2)?.matmul(&cell)?.squeeze(2)?;
        let hidden = (sigmoid(&o)? * read.tanh()?)?.reshape((b, n * h))?;
        Ok(OuterState { cell, hidden })
    }
}

impl SequenceModel for OuterLstm {
    fn forward(&self, inputs: &Tensor, labels: &Tensor) -> Result<Tensor> {
        let tokens =
            &tokens::build_checked(inputs, labels, self.features, self.classes, usize::MAX)?;
        let s = softplus(&self.kappa)?;
        if !self.options.use_fused(tokens) {
            return self.forward_composed(tokens, &s);
        }
        let width = self.heads * self.size;
        let o = self.options;
        let u = self
            .enc2
            .forward_relu(&self.enc1.forward_relu(tokens, o)?, o)?;
        let w_in = self.gates.weight.narrow(0, 0, width)?;
        let w_rec = self.gates.weight.narrow(0, width, width)?;
        let input_half = Linear {
            weight: w_in,
            bias: self.gates.bias.clone(),
        };
        let from_input = input_half.forward(&u, o)?;
        let hidden = outer_lstm_recurrence(&from_input, &w_rec, &s, self.heads, o)?;
        self.head.forward(&hidden, o)
    }

    fn params(&self) -> &ParamStore {
        &self.params
    }

    fn kernel_options(&self) -> KernelOptions {
        self.options
    }

    /// `n·H²` for the matrix cells plus `n·H` for the hidden vector.
    fn state_size(&self, _seq_len: usize) -> usize {
        self.heads * self.size * self.size + self.heads * self.size
    }

    fn kind(&self) -> ModelKind {
        ModelKind::OuterLstm
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

    fn small(heads: usize) -> OuterLstm {
        let cfg = OuterLstmConfig {
            head_size: 3,
            heads,
        };
        OuterLstm::new(&cfg, 2, 3, 2, &Device::Cpu, KernelOptions::default()).unwrap()
    }

    #[test]
    fn parameter_counts_equal_the_papers_reference_values() {
        for (h, expected) in [(64, 84_107), (256, 1_171_979)] {
            let cfg = OuterLstmConfig {
                head_size: h,
                ..OuterLstmConfig::default()
            };
            assert_eq!(
                OuterLstm::new(&cfg, 196, 10, 0, &Device::Cpu, KernelOptions::default())
                    .unwrap()
                    .param_count(),
                expected,
                "H {h}"
            );
        }
    }

    #[test]
    fn state_size_is_heads_times_h_squared_plus_h() {
        assert_eq!(small(1).state_size(100), 9 + 3);
        assert_eq!(small(2).state_size(100), 2 * 9 + 2 * 3);
    }

    #[test]
    fn one_step_on_a_two_by_two_cell_equals_the_hand_computed_state() {
        let cfg = OuterLstmConfig {
            head_size: 2,
            ..OuterLstmConfig::default()
        };
        let model = OuterLstm::new(&cfg, 2, 2, 0, &Device::Cpu, KernelOptions::default()).unwrap();
        let g: Vec<f32> = (0..16).map(|i| ((i as f32) * 0.37).sin()).collect();
        let c0 = [[0.5f32, -0.25], [1.0, 0.125]];
        let kappa = 0.3f64;
        let s = (1.0 + kappa.exp()).ln();
        let state = OuterState {
            cell: Tensor::from_vec(c0.concat(), (1, 1, 2, 2), &Device::Cpu).unwrap(),
            hidden: Tensor::zeros((1, 2), DType::F32, &Device::Cpu).unwrap(),
        };
        let s_tensor = Tensor::new(&[s as f32], &Device::Cpu).unwrap();
        let g_tensor = Tensor::from_vec(g.clone(), (1, 16), &Device::Cpu).unwrap();
        let next = model.step(&g_tensor, &s_tensor, &state).unwrap();

        let sig = |x: f64| 1.0 / (1.0 + (-x).exp());
        let g: Vec<f64> = g.iter().map(|&v| v as f64).collect();
        let k1: Vec<f64> = g[0..6].iter().map(|v| v.tanh() * s).collect();
        let k2: Vec<f64> = g[6..12].iter().map(|v| v.tanh()).collect();
        let (q, o) = (&g[12..14], &g[14..16]);
        let mut cell = [[0f64; 2]; 2];
        for j in 0..2 {
            for k in 0..2 {
                let input = k1[j] * k2[k];
                let update = k1[2 + j] * k2[2 + k];
                let forget = sig(k1[4 + j] * k2[4 + k] + 1.0);
                cell[j][k] = forget * c0[j][k] as f64 + sig(input) * update;
            }
        }
        let got_cell: Vec<f32> = next.cell.flatten_all().unwrap().to_vec1().unwrap();
        let got_hidden: Vec<f32> = next.hidden.flatten_all().unwrap().to_vec1().unwrap();
        for j in 0..2 {
            for k in 0..2 {
                assert!(
                    (got_cell[j * 2 + k] as f64 - cell[j][k]).abs() < 1e-5,
                    "C[{j}][{k}]"
                );
            }
        }
        for k in 0..2 {
            let read = cell[0][k] * q[0] + cell[1][k] * q[1];
            let h = sig(o[k]) * read.tanh();
            assert!(
                (got_hidden[k] as f64 - h).abs() < 1e-5,
                "h[{k}]: {} vs {h}",
                got_hidden[k]
            );
        }
    }

    #[test]
    fn predictions_never_depend_on_later_inputs() {
        testing::assert_causal(&small(2));
    }

    #[test]
    fn the_fused_model_equals_the_composed_one_with_gradients() {
        let m = small(2);
        let (x, y) = testing::examples(3, 6, 2, 8);
        let s = softplus(&m.kappa).unwrap();
        let fused = m.forward(&x, &y).unwrap();
        let tokens = tokens::build(&x, &y, 3).unwrap();
        let composed = m.forward_composed(&tokens, &s).unwrap();
        let diff = (&fused - &composed)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(diff < 1e-5, "forward differs by {diff}");
        let gf = gpicl_kernels::composed::cross_entropy(&fused, &y)
            .unwrap()
            .backward()
            .unwrap();
        let gc = gpicl_kernels::composed::cross_entropy(&composed, &y)
            .unwrap()
            .backward()
            .unwrap();
        for (name, var) in m.params().iter() {
            let (a, b) = (
                gf.get(var.as_tensor()).unwrap(),
                gc.get(var.as_tensor()).unwrap(),
            );
            let diff = (a - b)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(diff < 1e-4, "{name} gradient differs by {diff}");
        }
    }

    #[test]
    fn every_parameter_receives_a_nonzero_gradient() {
        testing::assert_every_parameter_gets_a_gradient(&small(2));
    }

    #[test]
    fn gradient_matches_finite_differences() {
        testing::assert_gradient_matches_finite_differences(&small(1));
    }
}
