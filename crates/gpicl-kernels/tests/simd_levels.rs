//! Every SIMD level the CPU offers computes the same bits: the kernels run
//! in child processes of this test binary, each capped with
//! `GPICL_CPU_CAPABILITY`, and the digests of all their outputs compare
//! equal (so a run is reproducible whichever machine it lands on, as long
//! as `gemm` picks the same products).

use gpicl_kernels::host::{self, AttentionShape};
use gpicl_kernels::op::adam::{self, AdamStep};
use gpicl_kernels::op::vsml::{self, VsmlDims};
use gpicl_kernels::op::{lstm, outer_lstm};
use gpicl_kernels::simd::{detected_level, level, SimdLevel};
use gpicl_kernels::{Device, KernelOptions, Tensor, Var};
use std::process::Command;

fn data(len: usize, seed: u32) -> Vec<f32> {
    (0..len)
        .map(|i| {
            let x = (i as u32)
                .wrapping_mul(2_654_435_761)
                .wrapping_add(seed.wrapping_mul(40_503));
            (x as f32 / u32::MAX as f32) * 4.0 - 2.0
        })
        .collect()
}

struct Digest(u64);

impl Digest {
    fn add(&mut self, xs: &[f32]) {
        for x in xs {
            self.0 = (self.0 ^ x.to_bits() as u64).wrapping_mul(0x100_0000_01b3);
        }
    }
}

/// Runs every kernel with an elementwise or reduction loop on odd shapes
/// and hashes the bits of every output.
fn digest_of_every_kernel() -> u64 {
    let mut d = Digest(0xcbf2_9ce4_8422_2325);
    let (rows, k, n) = (37, 29, 19);
    let (x, w, b) = (data(rows * k, 1), data(k * n, 2), data(n, 3));
    let mut y = vec![0f32; rows * n];
    host::linear_forward(&x, &w, &b, &mut y, false);
    d.add(&y);
    host::linear_relu_forward(&x, &w, &b, &mut y, false);
    d.add(&y);
    let grad = data(rows * n, 4);
    let (mut dx, mut dw, mut db) = (vec![0f32; rows * k], vec![0f32; k * n], vec![0f32; n]);
    host::linear_backward(&x, &w, &grad, Some(&mut dx), &mut dw, &mut db, false, false);
    d.add(&dx);
    d.add(&dw);
    d.add(&db);
    let mut masked = vec![0f32; rows * n];
    host::relu_backward(&y, &grad, &mut masked);
    d.add(&masked);

    let (gain, bias) = (data(k, 5), data(k, 6));
    let mut ln = vec![0f32; rows * k];
    host::layer_norm_forward(&x, &gain, &bias, 1e-5, &mut ln);
    d.add(&ln);
    let (mut dln, mut dgain, mut dbias) = (vec![0f32; rows * k], vec![0f32; k], vec![0f32; k]);
    host::layer_norm_backward(&x, &ln, &gain, 1e-5, &mut dln, &mut dgain, &mut dbias);
    d.add(&dln);
    d.add(&dgain);
    d.add(&dbias);
    for tanh in [false, true] {
        let mut out = vec![0f32; rows * k];
        host::gelu_forward(&x, tanh, &mut out);
        d.add(&out);
        host::gelu_backward(&x, &ln, tanh, &mut out);
        d.add(&out);
    }

    let s = AttentionShape {
        batch: 3,
        t: 23,
        heads: 2,
        key: 7,
    };
    let len = s.batch * s.t * s.heads * s.key;
    let (q, kk, v, g) = (data(len, 7), data(len, 8), data(len, 9), data(len, 10));
    let mut out = vec![0f32; len];
    host::causal_attention_forward(&q, &kk, &v, s, &mut out);
    d.add(&out);
    let (mut dq, mut dk, mut dv) = (vec![0f32; len], vec![0f32; len], vec![0f32; len]);
    host::causal_attention_backward(&q, &kk, &v, &g, s, &mut dq, &mut dk, &mut dv);
    d.add(&dq);
    d.add(&dk);
    d.add(&dv);

    let targets: Vec<u32> = (0..rows as u32).map(|i| (i * 7) % n as u32).collect();
    d.add(&[host::cross_entropy_forward(&y, &targets, n)]);
    let mut dlogits = vec![0f32; rows * n];
    host::cross_entropy_backward(&y, &targets, n, 0.5, &mut dlogits);
    d.add(&dlogits);

    let (mut p, mut m, mut vv) = (data(999, 11), data(999, 12), data(999, 13));
    vv.iter_mut().for_each(|x| *x = x.abs());
    let step = AdamStep {
        lr: 1e-3,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        eps_root: 1e-12,
        weight_decay: 0.01,
        correction1: 0.1,
        correction2: 0.001,
    };
    adam::adam_update(&mut p, &data(999, 14), &mut m, &mut vv, &step);
    d.add(&p);
    d.add(&m);
    d.add(&vv);

    // The recurrences, forward and backward through candle's graph.
    let tensor = |shape: &[usize], seed| {
        let n = shape.iter().product();
        let v: Vec<f32> = data(n, seed).iter().map(|x| x * 0.5).collect();
        Var::from_tensor(&Tensor::from_vec(v, shape, &Device::Cpu).unwrap()).unwrap()
    };
    let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let (bq, tq, h) = (3, 9, 6);
    let (xin, wrec) = (tensor(&[bq, tq, 4 * h], 15), tensor(&[h, 4 * h], 16));
    let hidden =
        lstm::lstm_recurrence(xin.as_tensor(), wrec.as_tensor(), KernelOptions::default()).unwrap();
    d.add(&flat(&hidden));
    let grads = hidden.sqr().unwrap().sum_all().unwrap().backward().unwrap();
    d.add(&flat(grads.get(xin.as_tensor()).unwrap()));
    d.add(&flat(grads.get(wrec.as_tensor()).unwrap()));
    let (heads, size) = (2, 19);
    let width = heads * size;
    let (xin, wrec) = (
        tensor(&[bq, tq, 8 * width], 17),
        tensor(&[width, 8 * width], 18),
    );
    let scale = Var::from_tensor(&Tensor::new(&[0.7f32], &Device::Cpu).unwrap()).unwrap();
    let hidden = outer_lstm::outer_lstm_recurrence(
        xin.as_tensor(),
        wrec.as_tensor(),
        scale.as_tensor(),
        heads,
        KernelOptions::default(),
    )
    .unwrap();
    d.add(&flat(&hidden));
    let grads = hidden.sqr().unwrap().sum_all().unwrap().backward().unwrap();
    for var in [&xin, &wrec, &scale] {
        d.add(&flat(grads.get(var.as_tensor()).unwrap()));
    }
    let dims = VsmlDims {
        inputs: 19,
        classes: 5,
        msg: 8,
        hidden: 16,
        micro_ticks: 2,
    };
    let tokens = tensor(&[2, 7, dims.inputs + dims.classes], 19);
    let params =
        Var::from_tensor(&(tensor(&[dims.param_len()], 20).as_tensor() * 0.2).unwrap()).unwrap();
    let logits = vsml::vsml_layer(
        tokens.as_tensor(),
        params.as_tensor(),
        dims,
        KernelOptions::default(),
    )
    .unwrap();
    d.add(&flat(&logits));
    let grads = logits.sqr().unwrap().sum_all().unwrap().backward().unwrap();
    d.add(&flat(grads.get(params.as_tensor()).unwrap()));
    d.0
}

/// Prints the digest when a parent test asks for it.
#[test]
fn digest_probe() {
    if std::env::var_os("GPICL_SIMD_PROBE").is_some() {
        println!(
            "DIGEST {} {:016x}",
            level().name(),
            digest_of_every_kernel()
        );
    }
}

#[test]
fn every_simd_level_computes_identical_bits() {
    let exe = std::env::current_exe().unwrap();
    let here = digest_of_every_kernel();
    let levels = [SimdLevel::Portable, SimdLevel::Avx2, SimdLevel::Avx512];
    for asked in levels.into_iter().filter(|l| *l <= detected_level()) {
        let out = Command::new(&exe)
            .args(["--exact", "digest_probe", "--nocapture", "--test-threads=1"])
            .env("GPICL_CPU_CAPABILITY", asked.name())
            .env("GPICL_SIMD_PROBE", "1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "probe at {}: {stdout}", asked.name());
        // The harness prints `test digest_probe ... ` on the same line.
        let line = stdout
            .lines()
            .find_map(|l| l.split_once("DIGEST ").map(|(_, rest)| rest))
            .unwrap_or_else(|| panic!("no digest at {}: {stdout}", asked.name()));
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(
            words[0],
            asked.name(),
            "the child ran at the level it was capped to"
        );
        assert_eq!(
            words[1],
            format!("{here:016x}"),
            "{} computes other bits than {}",
            asked.name(),
            level().name()
        );
    }
}
