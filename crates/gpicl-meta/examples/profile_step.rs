use gpicl_kernels::{composed, KernelOptions};
use gpicl_meta::TrainConfig;
use gpicl_models::build_model;
use gpicl_tasks::*;
use std::sync::Arc;
use std::time::Instant;

fn main() {
    let cfg = TrainConfig::small();
    let roots = DataRoots::new(None);
    let set = Arc::new(ImageSet::load(&roots, "mnist", Split::Train, &cfg.data).unwrap());
    let family = TaskFamily::new(0, set.n_x, 0.0);
    let dev = gpicl_kernels::Device::Cpu;
    let builder = BatchBuilder::new(family, cfg.data.normalization, 100, dev.clone());
    let mut sampler = TrainSampler::new(
        cfg.tasks.clone(),
        cfg.batch.clone(),
        builder,
        ExampleSource::Images(set.clone()),
        0,
    );
    let options = KernelOptions::from_env();
    let model = build_model(&cfg.model, set.n_x, 10, 100, 0, &dev, options).unwrap();
    for _ in 0..3 {
        let t0 = Instant::now();
        let batch = sampler.next_batch().unwrap();
        let t1 = Instant::now();
        let logits = model.forward(&batch.inputs, &batch.labels).unwrap();
        let loss = composed::cross_entropy(&logits, &batch.labels).unwrap();
        let t2 = Instant::now();
        let grads = loss.backward().unwrap();
        let t3 = Instant::now();
        for (_, v) in model.params().iter() {
            let _g: Vec<f32> = grads
                .get(v.as_tensor())
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
        }
        let t4 = Instant::now();
        println!(
            "batch {:?} fwd {:?} bwd {:?} grads {:?}",
            t1 - t0,
            t2 - t1,
            t3 - t2,
            t4 - t3
        );
    }
}
