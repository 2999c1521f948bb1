//! Seeded parameter initialisers, matching Haiku's conventions.

use gpicl_kernels::rng::Rng;
use gpicl_kernels::{Device, Tensor};

/// Haiku's correction so that a normal truncated at ±2σ keeps the requested
/// standard deviation (`VarianceScaling(distribution="truncated_normal")`).
const TRUNCATION_STD_CORRECTION: f64 = 0.879_625_661_034_239_8;

/// Draws initial values from a seeded stream and uploads them.
pub struct Initializer<'a> {
    rng: Rng,
    device: &'a Device,
}

impl<'a> Initializer<'a> {
    /// An initialiser reading from `rng`.
    pub fn new(rng: Rng, device: &'a Device) -> Self {
        Self { rng, device }
    }

    fn tensor(&mut self, shape: &[usize], mut draw: impl FnMut(&mut Rng) -> f64) -> Tensor {
        let n: usize = shape.iter().product();
        let data: Vec<f32> = (0..n).map(|_| draw(&mut self.rng) as f32).collect();
        Tensor::from_vec(data, shape, self.device).expect("shape matches element count")
    }

    /// Truncated normal (±2σ) with standard deviation `std` before
    /// truncation (Haiku's `TruncatedNormal(stddev)`).
    pub fn truncated_normal(&mut self, shape: &[usize], std: f64) -> Tensor {
        self.tensor(shape, |r| r.truncated_normal() * std)
    }

    /// Haiku's `VarianceScaling(scale, "fan_in", "truncated_normal")`.
    pub fn variance_scaling(&mut self, shape: &[usize], fan_in: usize, scale: f64) -> Tensor {
        let std = (scale / fan_in as f64).sqrt() / TRUNCATION_STD_CORRECTION;
        self.truncated_normal(shape, std)
    }

    /// All zeros.
    pub fn zeros(&self, shape: &[usize]) -> Tensor {
        Tensor::zeros(shape, gpicl_kernels::DType::F32, self.device).expect("zeros")
    }
}
