//! End-to-end behaviour of a meta-training run on the embedded data.

use gpicl::eval::{EvalConfig, Group};
use gpicl::meta::record::as_written;
use gpicl::meta::{MetaError, RunDir, RunRecord, Silent, TrainConfig, TrainRecord, Trainer};
use gpicl::run::evaluate::{evaluate_run, evaluate_run_on, PeriodicEval};
use gpicl::run::RunConfig;
use gpicl::tasks::{dataset::embedded_data_dir, DataRoots};
use gpicl_testing::absent_path;

fn roots() -> DataRoots {
    DataRoots::only(vec![embedded_data_dir()])
}

/// A model and batch small enough for a test: 7×7 images, 20-step sequences.
fn tiny(steps: u64) -> TrainConfig {
    let mut cfg = TrainConfig::small();
    cfg.model.transformer.d_model = 16;
    cfg.model.transformer.num_layers = 1;
    cfg.model.transformer.num_heads = 2;
    cfg.model.transformer.key_size = 8;
    cfg.data.image_size = 7;
    cfg.batch.tasks_per_step = 2;
    cfg.batch.seqs_per_task = 4;
    cfg.batch.seq_len = 20;
    cfg.tasks.permute_labels_prob = 0.5;
    cfg.schedule.steps = steps;
    cfg.schedule.checkpoint_every = 3;
    cfg.schedule.eval_every = 0;
    cfg
}

/// The protocol of the tiny runs: 2 tasks per group, 4 sequences each.
fn tiny_protocol() -> EvalConfig {
    let mut protocol = RunConfig::small().eval;
    protocol.tasks_per_group = 2;
    protocol.seqs_per_task = 4;
    protocol
}

/// Starts or resumes `cfg` in `dir` as a run evaluated by
/// [`tiny_protocol`], saved with it in `config.toml`.
fn open_run(cfg: TrainConfig, dir: &RunDir, roots: &DataRoots) -> Trainer {
    RunConfig {
        eval: tiny_protocol(),
        ..RunConfig::meta_trained(cfg)
    }
    .open_trainer(dir.clone(), roots, None)
    .unwrap()
}

fn train_losses(dir: &RunDir) -> Vec<(u64, u32)> {
    gpicl::meta::MetricsLog::open(&dir.metrics())
        .read()
        .unwrap()
        .iter()
        .filter_map(RunRecord::as_train)
        .map(|t| (t.step, t.loss.to_bits()))
        .collect()
}

fn final_weights(dir: &RunDir) -> Vec<Vec<f32>> {
    let run = gpicl::meta::load_run(dir, &gpicl::kernels::Device::Cpu).unwrap();
    run.model
        .params()
        .iter()
        .map(|(_, v)| v.flatten_all().unwrap().to_vec1().unwrap())
        .collect()
}

#[test]
fn the_same_seed_gives_bit_identical_losses() {
    let (a, b) = (
        RunDir::new(absent_path("seed-a")),
        RunDir::new(absent_path("seed-b")),
    );
    Trainer::open(tiny(4), a.clone(), &roots())
        .unwrap()
        .run(&mut Silent)
        .unwrap();
    Trainer::open(tiny(4), b.clone(), &roots())
        .unwrap()
        .run(&mut Silent)
        .unwrap();
    assert_eq!(train_losses(&a), train_losses(&b));
    assert_eq!(train_losses(&a).len(), 4);
    let mut other = tiny(4);
    other.seed = 1;
    let c = RunDir::new(absent_path("seed-c"));
    Trainer::open(other, c.clone(), &roots())
        .unwrap()
        .run(&mut Silent)
        .unwrap();
    assert_ne!(train_losses(&a), train_losses(&c));
}

#[test]
fn resumed_training_equals_uninterrupted_training_bit_for_bit() {
    let whole = RunDir::new(absent_path("whole"));
    Trainer::open(tiny(7), whole.clone(), &roots())
        .unwrap()
        .run(&mut Silent)
        .unwrap();

    // A run killed after step 5: its last checkpoint is at step 3, and its
    // log already holds steps 4 and 5, which the resumed run redoes.
    let killed = RunDir::new(absent_path("killed"));
    let mut first = Trainer::open(tiny(7), killed.clone(), &roots()).unwrap();
    for _ in 0..5 {
        let m = first.train_step().unwrap();
        first
            .metrics()
            .append(&RunRecord::Train(m.clone()))
            .unwrap();
        if m.step == 3 {
            first.checkpoint().unwrap();
        }
    }
    drop(first);
    let mut resumed = Trainer::open(tiny(7), killed.clone(), &roots()).unwrap();
    assert_eq!(resumed.step(), 3);
    resumed.run(&mut Silent).unwrap();

    assert_eq!(train_losses(&whole), train_losses(&killed));
    assert_eq!(final_weights(&whole), final_weights(&killed));
}

#[test]
fn a_resumed_vsml_run_equals_an_uninterrupted_one_bit_for_bit() {
    let vsml = |steps| {
        let mut cfg = tiny(steps);
        cfg.model.kind = gpicl::models::ModelKind::Vsml;
        cfg.model.vsml.hidden = 4;
        cfg.model.vsml.msg_size = 2;
        cfg.schedule.checkpoint_every = 2;
        cfg
    };
    let whole = RunDir::new(absent_path("vsml-whole"));
    Trainer::open(vsml(4), whole.clone(), &roots())
        .unwrap()
        .run(&mut Silent)
        .unwrap();
    let halves = RunDir::new(absent_path("vsml-halves"));
    Trainer::open(vsml(2), halves.clone(), &roots())
        .unwrap()
        .run(&mut Silent)
        .unwrap();
    Trainer::open(vsml(4), halves.clone(), &roots())
        .unwrap()
        .run(&mut Silent)
        .unwrap();
    assert_eq!(train_losses(&whole), train_losses(&halves));
    assert_eq!(final_weights(&whole), final_weights(&halves));
}

/// `tiny` with every recipe lever of `docs/configuration.md` switched on.
fn tiny_with_every_recipe_lever(steps: u64) -> TrainConfig {
    let mut cfg = tiny(steps);
    cfg.optim.warmup_steps = 3;
    cfg.optim.decay = gpicl::meta::LrDecay::Cosine;
    cfg.optim.min_lr_fraction = 0.2;
    cfg.tasks.permute_labels_prob = 0.7;
    cfg.tasks.permutation_mask = gpicl::tasks::PermutationMask::PerTask;
    cfg.tasks.fixed_permutation_fraction = 0.5;
    cfg.data.random_fraction = 0.5;
    cfg.data.tabular_fraction = 0.25;
    cfg.batch.curriculum_start_len = 8;
    cfg.batch.curriculum_steps = 5;
    cfg.model.transformer.previous_token_input = true;
    cfg
}

#[test]
fn resumed_training_with_every_recipe_lever_equals_uninterrupted_training() {
    let whole = RunDir::new(absent_path("levers-whole"));
    open_run(tiny_with_every_recipe_lever(7), &whole, &roots())
        .run(&mut Silent)
        .unwrap();
    let killed = RunDir::new(absent_path("levers-killed"));
    let mut first =
        Trainer::open(tiny_with_every_recipe_lever(7), killed.clone(), &roots()).unwrap();
    for _ in 0..5 {
        let m = first.train_step().unwrap();
        first
            .metrics()
            .append(&RunRecord::Train(m.clone()))
            .unwrap();
        if m.step == 3 {
            first.checkpoint().unwrap();
        }
    }
    drop(first);
    let mut resumed =
        Trainer::open(tiny_with_every_recipe_lever(7), killed.clone(), &roots()).unwrap();
    assert_eq!(resumed.step(), 3);
    resumed.run(&mut Silent).unwrap();
    assert_eq!(train_losses(&whole), train_losses(&killed));
    assert_eq!(final_weights(&whole), final_weights(&killed));

    // The levers did what they say: the learning rate warmed up and
    // decayed, and sequences grew from 8 examples to 20.
    let log = gpicl::meta::MetricsLog::open(&whole.metrics())
        .read()
        .unwrap();
    let train: Vec<&TrainRecord> = log.iter().filter_map(RunRecord::as_train).collect();
    let lr: Vec<f64> = train.iter().map(|t| t.lr).collect();
    assert!(lr[0] < lr[1] && lr[1] < lr[2], "warm-up: {lr:?}");
    assert!(
        lr[2] > lr[6] && (lr[6] - 0.2e-3).abs() < 1e-9,
        "cosine to the floor: {lr:?}"
    );
    let lengths: Vec<u64> = train
        .iter()
        .map(|t| t.seq_len.map_or(20, |l| l as u64))
        .collect();
    assert_eq!(lengths, vec![8, 11, 14, 17, 20, 20, 20]);
    let report = evaluate_run(
        &whole,
        &roots(),
        Some(vec!["mnist".into(), "random".into(), "tabular".into()]),
        None,
    )
    .unwrap();
    assert!(report.datasets["tabular"]["unseen"].acc_last.is_finite());
}

#[test]
fn gradient_accumulation_matches_the_full_batch_update() {
    let train_one = |accumulation: usize, name: &str| {
        let mut cfg = tiny(1);
        cfg.optim.accumulation_steps = accumulation;
        let dir = RunDir::new(absent_path(name));
        Trainer::open(cfg, dir.clone(), &roots())
            .unwrap()
            .run(&mut Silent)
            .unwrap();
        (train_losses(&dir)[0].1, final_weights(&dir))
    };
    let (loss_full, full) = train_one(1, "accum-1");
    let (loss_split, split) = train_one(4, "accum-4");
    assert!((f32::from_bits(loss_full) - f32::from_bits(loss_split)).abs() < 1e-5);
    for (a, b) in full.iter().flatten().zip(split.iter().flatten()) {
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
    }
}

#[test]
fn tensorboard_event_files_are_written_beside_the_jsonl_log_when_asked() {
    let dir = RunDir::new(absent_path("tensorboard"));
    let mut cfg = tiny(3);
    cfg.schedule.tensorboard = true;
    Trainer::open(cfg, dir.clone(), &roots())
        .unwrap()
        .run(&mut Silent)
        .unwrap();
    let files: Vec<_> = std::fs::read_dir(dir.tensorboard())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let name = files[0].file_name().unwrap().to_string_lossy().to_string();
    assert!(name.starts_with("events.out.tfevents."), "{name}");
    let bytes = std::fs::read(&files[0]).unwrap();
    // The version event and one event per training step (more with
    // periodic evaluations), each tagged with the loss.
    let tags = bytes.windows(10).filter(|w| w == b"train/loss").count();
    assert_eq!(tags, 3);
    // Off by default: no folder.
    let plain = RunDir::new(absent_path("no-tensorboard"));
    Trainer::open(tiny(1), plain.clone(), &roots())
        .unwrap()
        .run(&mut Silent)
        .unwrap();
    assert!(!plain.tensorboard().exists());
}

#[test]
fn tensorboard_holds_each_evaluations_per_position_curves_when_asked() {
    let dir = RunDir::new(absent_path("tensorboard-curves"));
    let mut cfg = tiny(2);
    cfg.schedule.eval_every = 1;
    cfg.schedule.tensorboard = true;
    open_run(cfg, &dir, &roots())
        .run(&mut PeriodicEval::new(roots(), tiny_protocol()))
        .unwrap();
    let report = evaluate_run(&dir, &roots(), Some(vec!["mnist".into()]), None).unwrap();
    // The periodic evaluation at step 1, the final one at step 2.
    for step in [1, 2] {
        let folder = gpicl::run::curves::curves_dir(&dir.tensorboard(), step);
        let files: Vec<_> = std::fs::read_dir(&folder)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(files.len(), 1, "{files:?}");
        let scalars = gpicl::meta::tensorboard::read_scalars(&files[0]).unwrap();
        let curve: Vec<u64> = scalars
            .iter()
            .filter(|s| s.tag == "curve/mnist/unseen/acc")
            .map(|s| s.step)
            .collect();
        assert_eq!(curve, (1..=20).collect::<Vec<u64>>(), "step {step}");
    }
    // The final curves are the report's, position by position.
    let folder = gpicl::run::curves::curves_dir(&dir.tensorboard(), 2);
    let file = std::fs::read_dir(&folder)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let written: Vec<f32> = gpicl::meta::tensorboard::read_scalars(&file)
        .unwrap()
        .into_iter()
        .filter(|s| s.tag == "curve/mnist/unseen_permuted/acc")
        .map(|s| s.value)
        .collect();
    assert_eq!(
        written,
        report.datasets["mnist"]["unseen_permuted"].acc_curve
    );
}

/// A sink that keeps the training steps it was handed.
struct TrainSteps(std::sync::Arc<std::sync::Mutex<Vec<u64>>>);

impl gpicl::meta::MetricSink for TrainSteps {
    fn record(&self, record: &RunRecord) -> gpicl::meta::Result<()> {
        if let Some(train) = record.as_train() {
            self.0.lock().unwrap().push(train.step);
        }
        Ok(())
    }
}

#[test]
fn a_metric_sink_added_to_a_trainer_sees_every_step_the_jsonl_log_holds() {
    let dir = RunDir::new(absent_path("metric-sink"));
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut trainer = Trainer::open(tiny(3), dir.clone(), &roots()).unwrap();
    trainer.add_metric_sink(Box::new(TrainSteps(std::sync::Arc::clone(&seen))));
    trainer.run(&mut Silent).unwrap();
    let logged: Vec<u64> = train_losses(&dir).iter().map(|&(step, _)| step).collect();
    assert_eq!(logged, vec![1, 2, 3]);
    assert_eq!(*seen.lock().unwrap(), logged);
}

#[test]
fn a_run_initialised_from_another_starts_from_its_weights_and_refuses_another_model() {
    let source = RunDir::new(absent_path("init-source"));
    Trainer::open(tiny(3), source.clone(), &roots())
        .unwrap()
        .run(&mut Silent)
        .unwrap();
    let mut cfg = tiny(2);
    cfg.seed = 9;
    cfg.init_from = source.root().display().to_string();
    let tuned = RunDir::new(absent_path("init-tuned"));
    let mut trainer = Trainer::open(cfg.clone(), tuned.clone(), &roots()).unwrap();
    let start: Vec<Vec<f32>> = trainer
        .model()
        .params()
        .iter()
        .map(|(_, v)| v.flatten_all().unwrap().to_vec1().unwrap())
        .collect();
    assert_eq!(
        start,
        final_weights(&source),
        "starts from the source's weights"
    );
    trainer.run(&mut Silent).unwrap();
    assert_ne!(
        final_weights(&tuned),
        final_weights(&source),
        "and trains on"
    );
    let saved = std::fs::read_to_string(tuned.config()).unwrap();
    assert!(saved.contains("init_from = "), "{saved}");

    let refused = |cfg: TrainConfig, name: &str| match Trainer::open(
        cfg,
        RunDir::new(absent_path(name)),
        &roots(),
    ) {
        Ok(_) => panic!("{name}: opened"),
        Err(e) => e.to_string(),
    };
    let mut wider = cfg.clone();
    wider.model.transformer.d_model = 32;
    let err = refused(wider, "init-wider");
    assert!(
        err.contains("init_from") && err.contains("model.d_model = 32"),
        "{err}"
    );
    let mut nowhere = cfg;
    nowhere.init_from = absent_path("init-nowhere").display().to_string();
    let err = refused(nowhere, "init-nowhere-run");
    assert!(err.contains("no config.toml"), "{err}");
}

#[test]
fn a_deeper_run_initialised_from_a_shallower_one_starts_where_it_stopped() {
    let source = RunDir::new(absent_path("deepen-source"));
    Trainer::open(tiny(3), source.clone(), &roots())
        .unwrap()
        .run(&mut Silent)
        .unwrap();
    let first_loss = |num_layers: usize, name: &str| {
        let mut cfg = tiny(1);
        cfg.model.transformer.num_layers = num_layers;
        cfg.init_from = source.root().display().to_string();
        let dir = RunDir::new(absent_path(name));
        Trainer::open(cfg, dir.clone(), &roots())
            .unwrap()
            .run(&mut Silent)
            .unwrap();
        train_losses(&dir)[0]
    };
    // The same first batch through the trained block alone and with two
    // new blocks appended: the new blocks add exactly nothing.
    assert_eq!(first_loss(3, "deepen-3"), first_loss(1, "deepen-1"));
}

#[test]
fn a_larger_step_count_continues_a_finished_run() {
    let dir = RunDir::new(absent_path("continue"));
    Trainer::open(tiny(2), dir.clone(), &roots())
        .unwrap()
        .run(&mut Silent)
        .unwrap();
    let mut more = Trainer::open(tiny(4), dir.clone(), &roots()).unwrap();
    assert_eq!(more.step(), 2);
    more.run(&mut Silent).unwrap();
    let steps: Vec<u64> = train_losses(&dir).iter().map(|s| s.0).collect();
    assert_eq!(steps, vec![1, 2, 3, 4]);
}

#[test]
fn a_time_budget_stops_training_early_with_a_checkpoint() {
    let dir = RunDir::new(absent_path("budget"));
    let mut cfg = tiny(1_000_000);
    cfg.schedule.max_minutes = 1e-9;
    let mut trainer = Trainer::open(cfg, dir.clone(), &roots()).unwrap();
    trainer.run(&mut Silent).unwrap();
    assert!(
        trainer.step() < 10,
        "stopped after {} steps",
        trainer.step()
    );
    let checkpoints = gpicl::meta::checkpoint::list_checkpoints(&dir.checkpoints());
    assert_eq!(checkpoints.last().map(|c| c.0), Some(trainer.step()));
}

/// Steps of the train records whose loss was at most `limit`.
fn steps_with_loss_at_most(dir: &RunDir, limit: f64) -> Vec<u64> {
    gpicl::meta::MetricsLog::open(&dir.metrics())
        .read()
        .unwrap()
        .iter()
        .filter_map(RunRecord::as_train)
        .filter(|t| as_written(t.loss) <= limit)
        .map(|t| t.step)
        .collect()
}

#[test]
fn a_diverging_run_stops_with_an_error_and_keeps_its_checkpoint() {
    let dir = RunDir::new(absent_path("diverge"));
    let mut cfg = tiny(30);
    cfg.optim.lr = 1e30;
    let err = Trainer::open(cfg, dir.clone(), &roots())
        .unwrap()
        .run(&mut Silent)
        .unwrap_err();
    assert!(
        matches!(
            err,
            MetaError::NonFiniteLoss { .. } | MetaError::Diverged { .. }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("step"), "{err}");
    // Whatever was checkpointed predates the divergence.
    let good = steps_with_loss_at_most(&dir, 4.0 * 10f64.ln());
    for (step, _) in gpicl::meta::checkpoint::list_checkpoints(&dir.checkpoints()) {
        assert!(good.contains(&step), "checkpoint of diverged step {step}");
    }
}

#[test]
fn a_huge_learning_rate_is_stopped_by_the_divergence_guard_before_it_replaces_good_checkpoints() {
    // Defect: `--lr 1e6` trained 60 steps to a loss of 1.5e13 and rotated
    // the good checkpoints away. Train 6 sane steps, then continue at 1e6.
    let dir = RunDir::new(absent_path("guard"));
    let mut cfg = tiny(6);
    cfg.schedule.checkpoint_every = 2;
    cfg.schedule.divergence_patience = 5;
    Trainer::open(cfg.clone(), dir.clone(), &roots())
        .unwrap()
        .run(&mut Silent)
        .unwrap();
    let good: Vec<u64> = gpicl::meta::checkpoint::list_checkpoints(&dir.checkpoints())
        .iter()
        .map(|c| c.0)
        .collect();
    assert_eq!(good, vec![4, 6]);
    cfg.schedule.steps = 60;
    cfg.optim.lr = 1e6;
    let err = Trainer::open(cfg, dir.clone(), &roots())
        .unwrap()
        .run(&mut Silent)
        .unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(
            err,
            MetaError::Diverged { .. } | MetaError::NonFiniteLoss { .. }
        ),
        "{message}"
    );
    assert!(message.contains("optim.lr"), "{message}");
    let threshold = 4.0 * 10f64.ln();
    let sane = steps_with_loss_at_most(&dir, threshold);
    let kept: Vec<u64> = gpicl::meta::checkpoint::list_checkpoints(&dir.checkpoints())
        .iter()
        .map(|c| c.0)
        .collect();
    assert!(
        kept.contains(&6),
        "the last good checkpoint survives: {kept:?}"
    );
    assert!(
        kept.iter().all(|s| sane.contains(s)),
        "{kept:?} vs sane {sane:?}"
    );
    if let MetaError::Diverged { step, .. } = err {
        assert!(step < 60, "stopped early, at step {step}");
    }
}

#[test]
fn an_absurd_learning_rate_never_checkpoints_poisoned_weights_and_a_sane_one_resumes() {
    // Defect: lr 1e12 gave huge weights with a normal loss, the next step
    // was NaN, and the failure path checkpointed the poisoned weights.
    let dir = RunDir::new(absent_path("poisoned"));
    let mut cfg = tiny(6);
    Trainer::open(cfg.clone(), dir.clone(), &roots())
        .unwrap()
        .run(&mut Silent)
        .unwrap();
    cfg.schedule.steps = 12;
    cfg.schedule.checkpoint_every = 100;
    cfg.schedule.divergence_patience = 2;
    cfg.optim.lr = 1e12;
    let err = Trainer::open(cfg.clone(), dir.clone(), &roots())
        .unwrap()
        .run(&mut Silent)
        .unwrap_err();
    assert!(
        matches!(
            err,
            MetaError::NonFiniteLoss { .. }
                | MetaError::Corrupt { .. }
                | MetaError::Diverged { .. }
        ),
        "{err}"
    );
    let newest = gpicl::meta::checkpoint::list_checkpoints(&dir.checkpoints())
        .pop()
        .unwrap();
    assert_eq!(newest.0, 6, "the good checkpoint stays the newest");
    cfg.optim.lr = 1e-3;
    let mut resumed = Trainer::open(cfg, dir.clone(), &roots()).unwrap();
    assert_eq!(resumed.step(), 6);
    resumed.run(&mut Silent).unwrap();
}

#[test]
fn resuming_under_another_training_config_is_refused_naming_the_differing_keys() {
    // Defect: editing or deleting config.toml let a run go on under
    // another config; the checkpoints now carry the config they were
    // trained with.
    let dir = RunDir::new(absent_path("identity-config"));
    let cfg = tiny(3);
    Trainer::open(cfg.clone(), dir.clone(), &roots())
        .unwrap()
        .run(&mut Silent)
        .unwrap();
    let mut other = cfg.clone();
    other.optim.beta1 = 0.5;
    other.tasks.num_tasks = 7;
    other.schedule.steps = 6;
    let err = Trainer::open(other, dir.clone(), &roots())
        .err()
        .expect("refused");
    let message = err.to_string();
    assert!(matches!(err, MetaError::Config { .. }), "{message}");
    assert!(
        message.contains("optim.beta1") && message.contains("tasks.num_tasks"),
        "{message}"
    );
    assert_eq!(
        gpicl::meta::checkpoint::list_checkpoints(&dir.checkpoints()).len(),
        1,
        "the checkpoint is kept"
    );
    let mut longer = cfg;
    longer.schedule.steps = 6;
    longer.optim.lr *= 0.5;
    let mut resumed = Trainer::open(longer, dir.clone(), &roots()).unwrap();
    assert_eq!(resumed.step(), 3, "schedule and lr may change");
    resumed.run(&mut Silent).unwrap();
}

#[test]
fn a_checkpoint_of_another_run_dropped_into_a_run_is_set_aside() {
    let (mine, theirs) = (
        RunDir::new(absent_path("identity-mine")),
        RunDir::new(absent_path("identity-theirs")),
    );
    Trainer::open(tiny(3), mine.clone(), &roots())
        .unwrap()
        .run(&mut Silent)
        .unwrap();
    Trainer::open(tiny(6), theirs.clone(), &roots())
        .unwrap()
        .run(&mut Silent)
        .unwrap();
    let foreign = gpicl::meta::checkpoint::list_checkpoints(&theirs.checkpoints())
        .pop()
        .unwrap()
        .1;
    std::fs::copy(
        &foreign,
        mine.checkpoints().join(foreign.file_name().unwrap()),
    )
    .unwrap();
    let trainer = Trainer::open(tiny(6), mine.clone(), &roots()).unwrap();
    assert_eq!(trainer.step(), 3);
    let skipped = trainer.skipped();
    assert_eq!(skipped.len(), 1);
    assert!(
        skipped[0].reason.contains("another run"),
        "{}",
        skipped[0].reason
    );
}

#[test]
fn a_failing_periodic_evaluation_stops_training_after_a_checkpoint() {
    let dir = RunDir::new(absent_path("bad-periodic"));
    let mut cfg = tiny(10);
    cfg.schedule.eval_every = 2;
    cfg.schedule.checkpoint_every = 100;
    let protocol = EvalConfig {
        periodic_datasets: vec!["no_such_dataset".into()],
        ..tiny_protocol()
    };
    let err = Trainer::open(cfg, dir.clone(), &roots())
        .unwrap()
        .run(&mut PeriodicEval::new(roots(), protocol))
        .unwrap_err();
    assert!(err.to_string().contains("no_such_dataset"), "{err}");
    let checkpoints = gpicl::meta::checkpoint::list_checkpoints(&dir.checkpoints());
    assert_eq!(checkpoints.last().map(|c| c.0), Some(2));
}

#[test]
fn resuming_on_another_copy_of_the_dataset_is_refused() {
    let dir = RunDir::new(absent_path("other-copy"));
    Trainer::open(tiny(2), dir.clone(), &roots())
        .unwrap()
        .run(&mut Silent)
        .unwrap();
    // A copy of MNIST with fewer training examples.
    let other = absent_path("other-copy-data");
    let mnist = other.join("mnist");
    std::fs::create_dir_all(&mnist).unwrap();
    let src = embedded_data_dir().join("mnist");
    let mut images = gpicl::tasks::idx::read_idx(&src.join("train-images-idx3-ubyte.gz")).unwrap();
    let mut labels = gpicl::tasks::idx::read_idx(&src.join("train-labels-idx1-ubyte.gz")).unwrap();
    images.dims[0] = 100;
    images.data.truncate(100 * 28 * 28);
    labels.dims[0] = 100;
    labels.data.truncate(100);
    gpicl::tasks::idx::write_idx(&mnist.join("train-images-idx3-ubyte"), &images).unwrap();
    gpicl::tasks::idx::write_idx(&mnist.join("train-labels-idx1-ubyte"), &labels).unwrap();
    let err = Trainer::open(tiny(4), dir, &DataRoots::only(vec![other]))
        .err()
        .expect("refused")
        .to_string();
    assert!(
        err.contains("10000") && err.contains("100") && err.contains("--data-dir"),
        "{err}"
    );
}

#[test]
fn a_run_that_failed_to_start_can_be_retried_with_another_config() {
    let dir = RunDir::new(absent_path("retry"));
    let mut bad = tiny(1);
    bad.data.dataset = "fashion_mnist".into(); // the embedded copy has no train split
    assert!(Trainer::open(bad, dir.clone(), &roots()).is_err());
    assert!(!dir.exists());
    Trainer::open(tiny(1), dir.clone(), &roots())
        .unwrap()
        .run(&mut Silent)
        .unwrap();
}

#[test]
fn a_corrupt_checkpoint_is_refused_with_its_path() {
    let dir = RunDir::new(absent_path("corrupt"));
    Trainer::open(tiny(3), dir.clone(), &roots())
        .unwrap()
        .run(&mut Silent)
        .unwrap();
    let (_, path) = gpicl::meta::checkpoint::list_checkpoints(&dir.checkpoints())
        .pop()
        .unwrap();
    std::fs::write(&path, b"not a checkpoint").unwrap();
    let err = Trainer::open(tiny(6), dir.clone(), &roots())
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains(&path.display().to_string()), "{err}");
}

#[test]
fn a_corrupt_newest_checkpoint_is_skipped_and_the_run_resumes_from_the_older_one() {
    let whole = RunDir::new(absent_path("fallback-whole"));
    Trainer::open(tiny(9), whole.clone(), &roots())
        .unwrap()
        .run(&mut Silent)
        .unwrap();
    for damage in ["header", "one flipped byte"] {
        let dir = RunDir::new(absent_path(&format!("fallback-{}", damage.len())));
        Trainer::open(tiny(6), dir.clone(), &roots())
            .unwrap()
            .run(&mut Silent)
            .unwrap();
        let (_, newest) = gpicl::meta::checkpoint::list_checkpoints(&dir.checkpoints())
            .pop()
            .unwrap();
        let mut bytes = std::fs::read(&newest).unwrap();
        match damage {
            "header" => bytes[..8].copy_from_slice(&u64::MAX.to_le_bytes()),
            _ => {
                let last = bytes.len() - 1;
                bytes[last] ^= 0x40;
            }
        }
        std::fs::write(&newest, &bytes).unwrap();
        let mut resumed = Trainer::open(tiny(9), dir.clone(), &roots()).unwrap();
        assert_eq!(resumed.step(), 3, "{damage}: resumed from step 3");
        assert_eq!(resumed.skipped().len(), 1, "{damage}");
        let reason = &resumed.skipped()[0].reason;
        if damage != "header" {
            assert!(reason.contains("checksum"), "{reason}");
        }
        assert!(resumed.skipped()[0]
            .path
            .to_string_lossy()
            .ends_with(".corrupt"));
        resumed.run(&mut Silent).unwrap();
        drop(resumed);
        assert_eq!(train_losses(&dir), train_losses(&whole), "{damage}");
        assert_eq!(final_weights(&dir), final_weights(&whole), "{damage}");
    }
}

#[test]
fn from_step_resumes_from_an_older_checkpoint_on_purpose() {
    let whole = RunDir::new(absent_path("from-step-whole"));
    Trainer::open(tiny(9), whole.clone(), &roots())
        .unwrap()
        .run(&mut Silent)
        .unwrap();
    let dir = RunDir::new(absent_path("from-step"));
    let mut cfg = tiny(9);
    cfg.schedule.keep_checkpoints = 5;
    Trainer::open(cfg.clone(), dir.clone(), &roots())
        .unwrap()
        .run(&mut Silent)
        .unwrap();
    let err = Trainer::open_at(cfg.clone(), dir.clone(), &roots(), Some(4))
        .err()
        .expect("no checkpoint at step 4")
        .to_string();
    assert!(err.contains("step 4") && err.contains("3, 6, 9"), "{err}");
    let mut again = Trainer::open_at(cfg, dir.clone(), &roots(), Some(3)).unwrap();
    assert_eq!(again.step(), 3);
    assert_eq!(again.skipped().len(), 2, "steps 6 and 9 set aside");
    again.run(&mut Silent).unwrap();
    drop(again);
    assert_eq!(train_losses(&dir), train_losses(&whole));
}

#[test]
fn a_second_trainer_on_the_same_folder_is_refused_naming_the_first() {
    // Defect: two `train` processes on one --out both ran and interleaved
    // metrics.jsonl.
    let dir = RunDir::new(absent_path("locked"));
    let first = Trainer::open(tiny(3), dir.clone(), &roots()).unwrap();
    let err = Trainer::open(tiny(3), dir.clone(), &roots())
        .err()
        .expect("refused while the first holds it");
    let message = err.to_string();
    assert!(matches!(err, MetaError::Locked { .. }), "{message}");
    assert!(
        message.contains(&format!("PID {}", std::process::id())),
        "{message}"
    );
    drop(first);
    Trainer::open(tiny(3), dir, &roots()).expect("free once the first is gone");
}

#[test]
fn evaluation_reports_every_group_of_every_dataset_with_curves_and_plots() {
    let dir = RunDir::new(absent_path("eval"));
    let mut cfg = tiny(2);
    cfg.schedule.eval_every = 1;
    let mut trainer = open_run(cfg.clone(), &dir, &roots());
    trainer
        .run(&mut PeriodicEval::new(roots(), tiny_protocol()))
        .unwrap();
    let report = evaluate_run(
        &dir,
        &roots(),
        Some(vec![
            "mnist".into(),
            "fashion_mnist".into(),
            "random".into(),
        ]),
        None,
    )
    .unwrap();
    let json = report.to_json();
    for dataset in ["mnist", "fashion_mnist", "random"] {
        for group in Group::ALL {
            let g = &json[dataset][group.as_str()];
            assert_eq!(
                g["acc_curve"].as_array().map(|a| a.len()),
                Some(20),
                "{dataset}/{group}"
            );
            let acc = g["acc_last"].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&acc));
            assert!(g["loss_last"].as_f64().unwrap() > 0.0);
        }
        let svg =
            std::fs::read_to_string(dir.eval().join(format!("curves-{dataset}.svg"))).unwrap();
        assert!(svg.contains("<svg") && svg.contains("unseen_permuted"));
    }
    let log = gpicl::meta::MetricsLog::open(&dir.metrics())
        .read()
        .unwrap();
    assert!(log
        .iter()
        .filter_map(RunRecord::as_eval)
        .any(|e| e.dataset == "fashion_mnist" && e.group == "identity"));
    // The periodic evaluation at step 1 covered the training dataset.
    assert!(log
        .iter()
        .filter_map(RunRecord::as_eval)
        .any(|e| e.step == 1 && e.dataset == "mnist" && e.group == "unseen_permuted"));
    // The saved config reproduces the run.
    let saved = TrainConfig::load(&dir.config()).unwrap();
    assert_eq!(saved, cfg);
    let saved = RunConfig::load(&dir.config()).unwrap();
    assert_eq!((saved.train, saved.eval), (cfg, tiny_protocol()));
}

#[test]
fn a_run_saved_for_a_missing_gpu_is_evaluated_on_the_device_asked_for() {
    let dir = RunDir::new(absent_path("other-device"));
    open_run(tiny(2), &dir, &roots()).run(&mut Silent).unwrap();
    let config = std::fs::read_to_string(dir.config()).unwrap();
    let moved = config.replace("device = \"cpu\"", "device = \"cuda:7\"");
    assert_ne!(config, moved, "config.toml names its device");
    std::fs::write(dir.config(), moved).unwrap();
    let datasets = Some(vec!["random".to_string()]);
    if gpicl::kernels::device::parse_device("cuda:7").is_err() {
        let err = evaluate_run(&dir, &roots(), datasets.clone(), None)
            .expect_err("no such GPU here")
            .to_string();
        assert!(err.contains("cuda:7"), "{err}");
    }
    let report = evaluate_run_on(&dir, &roots(), datasets, None, Some("cpu")).unwrap();
    assert!(report.to_json()["random"]["unseen"]["acc_last"].is_number());
}

#[test]
fn an_eval_with_mismatched_input_size_is_an_error() {
    let dir = RunDir::new(absent_path("mismatch"));
    open_run(tiny(1), &dir, &roots()).run(&mut Silent).unwrap();
    let mut cfg = RunConfig::load(&dir.config()).unwrap();
    cfg.train.data.image_size = 9;
    std::fs::write(dir.config(), cfg.to_toml().unwrap()).unwrap();
    let err = evaluate_run(&dir, &roots(), Some(vec!["mnist".into()]), None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("mnist") && err.contains("81") && err.contains("49"),
        "{err}"
    );
}

/// With a single task the model can only memorise: its seen task is
/// learnt, while unseen tasks (other projections and permutations) stay
/// near chance.
#[test]
fn a_single_task_run_memorises_its_task_but_does_not_generalise() {
    let dir = RunDir::new(absent_path("memorise"));
    let mut cfg = TrainConfig::small();
    cfg.model.transformer.d_model = 32;
    cfg.model.transformer.num_layers = 1;
    cfg.model.transformer.num_heads = 2;
    cfg.model.transformer.key_size = 16;
    cfg.data.image_size = 14;
    cfg.tasks.num_tasks = 1;
    cfg.tasks.permute_labels_prob = 1.0;
    cfg.batch.tasks_per_step = 1;
    cfg.batch.seqs_per_task = 16;
    cfg.batch.seq_len = 25;
    cfg.optim.lr = 3e-3;
    cfg.schedule.steps = MEMORISATION_STEPS;
    cfg.schedule.checkpoint_every = 1000;
    let mut run = RunConfig::small();
    run.train = cfg;
    run.eval.tasks_per_group = 8;
    run.eval.seqs_per_task = 32;
    run.open_trainer(dir.clone(), &roots(), None)
        .unwrap()
        .run(&mut Silent)
        .unwrap();
    let report = evaluate_run(&dir, &roots(), Some(vec!["mnist".into()]), None).unwrap();
    let mnist = &report.datasets["mnist"];
    let (seen, unseen) = (
        mnist["seen_permuted"].acc_last,
        mnist["unseen_permuted"].acc_last,
    );
    eprintln!("single task: seen {seen:.3}, unseen {unseen:.3}");
    assert!(seen > 0.7, "seen-task accuracy {seen}");
    assert!(unseen < 0.25, "unseen-task accuracy {unseen}");
}

const MEMORISATION_STEPS: u64 = 150;

#[test]
fn every_trainable_model_kind_trains_resumes_and_evaluates() {
    use gpicl::models::ModelKind;
    for kind in [
        ModelKind::Lstm,
        ModelKind::OuterLstm,
        ModelKind::Mlp,
        ModelKind::Maml,
        ModelKind::Vsml,
    ] {
        let dir = RunDir::new(absent_path(&format!("kind-{kind}")));
        let mut cfg = tiny(3);
        cfg.model.kind = kind;
        cfg.model.set_hidden(8);
        cfg.model.outer_lstm.heads = 2;
        cfg.model.online.hidden = 8;
        cfg.model.vsml.hidden = 4;
        cfg.model.vsml.msg_size = 2;
        cfg.schedule.checkpoint_every = 2;
        let mut trainer = open_run(cfg.clone(), &dir, &roots());
        trainer.train_step().unwrap();
        trainer.train_step().unwrap();
        trainer.checkpoint().unwrap();
        drop(trainer);
        let mut resumed = open_run(cfg, &dir, &roots());
        assert_eq!(resumed.step(), 2, "{kind}");
        resumed.run(&mut Silent).unwrap();
        let log = gpicl::meta::MetricsLog::open(&dir.metrics())
            .read()
            .unwrap();
        let first = log[0].as_model().expect("the first record is the model's");
        assert_eq!(first.model, kind.to_string());
        assert!(first.params > 0);
        let report = evaluate_run(&dir, &roots(), Some(vec!["mnist".into()]), None).unwrap();
        let unseen = &report.datasets["mnist"]["unseen"];
        assert_eq!(unseen.acc_curve.len(), 20, "{kind}");
        assert!(unseen.loss_last.is_finite(), "{kind}");
    }
}

/// Writes a generated dataset `name` with `classes` classes into `root`:
/// 8×8 images whose mean brightness encodes the class.
fn write_generated(root: &std::path::Path, name: &str, classes: usize, split: &str, n: usize) {
    use gpicl::tasks::idx::{write_idx, IdxArray};
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let labels: Vec<u8> = (0..n).map(|i| (i % classes) as u8).collect();
    let images: Vec<u8> = (0..n * 64)
        .map(|p| (labels[p / 64] as usize * 255 / classes + p % 7) as u8)
        .collect();
    let images = IdxArray {
        dims: vec![n, 8, 8],
        data: images,
    };
    write_idx(&dir.join(format!("{split}-images-idx3-ubyte.gz")), &images).unwrap();
    let labels = IdxArray {
        dims: vec![n],
        data: labels,
    };
    write_idx(&dir.join(format!("{split}-labels-idx1-ubyte.gz")), &labels).unwrap();
}

#[test]
fn a_dataset_with_many_classes_trains_on_ten_way_tasks_and_evaluates_its_train_split() {
    let data = absent_path("many-classes-data");
    write_generated(&data, "glyphs", 30, "train", 300);
    let roots = DataRoots::only(vec![data.clone(), embedded_data_dir()]);
    let dir = RunDir::new(absent_path("many-classes"));
    let mut cfg = tiny(2);
    cfg.data.dataset = "glyphs".into();
    open_run(cfg.clone(), &dir, &roots)
        .run(&mut Silent)
        .unwrap();
    assert_eq!(train_losses(&dir).len(), 2);

    // No test split: evaluating it needs eval.split = train, and says so.
    let err = evaluate_run(&dir, &roots, Some(vec!["glyphs".into()]), None).unwrap_err();
    assert!(err.to_string().contains("eval.split=train"), "{err}");
    let mut protocol = tiny_protocol();
    protocol.split = gpicl::tasks::Split::Train;
    let report = evaluate_run(&dir, &roots, Some(vec!["glyphs".into()]), Some(&protocol)).unwrap();
    let acc = report.to_json()["glyphs"]["unseen"]["acc_last"]
        .as_f64()
        .unwrap();
    assert!((0.0..=1.0).contains(&acc));
}

#[test]
fn a_mixture_of_datasets_trains_and_resumes_bit_for_bit() {
    let data = absent_path("mixture-data");
    write_generated(&data, "bright", 10, "train", 100);
    write_generated(&data, "dim", 10, "train", 60);
    let roots = DataRoots::only(vec![data.clone()]);
    let mut cfg = tiny(5);
    cfg.data.dataset = "bright,dim".into();
    let whole = RunDir::new(absent_path("mixture-whole"));
    Trainer::open(cfg.clone(), whole.clone(), &roots)
        .unwrap()
        .run(&mut Silent)
        .unwrap();
    let parts = RunDir::new(absent_path("mixture-parts"));
    let mut first = cfg.clone();
    first.schedule.steps = 3;
    Trainer::open(first, parts.clone(), &roots)
        .unwrap()
        .run(&mut Silent)
        .unwrap();
    Trainer::open(cfg, parts.clone(), &roots)
        .unwrap()
        .run(&mut Silent)
        .unwrap();
    assert_eq!(train_losses(&whole).len(), 5);
    assert_eq!(train_losses(&whole), train_losses(&parts));

    // A different copy of one of the datasets is refused on resume.
    write_generated(&data, "dim", 10, "train", 70);
    let mut longer = TrainConfig::load(&parts.config()).unwrap();
    longer.schedule.steps = 6;
    let err = Trainer::open(longer, parts, &roots).err().unwrap();
    assert!(err.to_string().contains("bright+dim"), "{err}");
}

fn unbiased_losses(dir: &RunDir) -> Vec<Option<f64>> {
    gpicl::meta::MetricsLog::open(&dir.metrics())
        .read()
        .unwrap()
        .iter()
        .filter_map(RunRecord::as_train)
        .map(|t| t.loss_unbiased.map(as_written))
        .collect()
}

#[test]
fn a_biased_run_logs_the_loss_outside_its_fixed_task_whatever_the_accumulation() {
    let plain = RunDir::new(absent_path("bias-plain"));
    Trainer::open(tiny(2), plain.clone(), &roots())
        .unwrap()
        .run(&mut Silent)
        .unwrap();
    assert_eq!(unbiased_losses(&plain), vec![None, None]);

    let mut biased = tiny(2);
    biased.tasks.single_task_fraction = 0.25; // 2 of 8 sequences
    let mut accumulated = biased.clone();
    accumulated.optim.accumulation_steps = 2; // the fixed rows sit in chunk 0 only
    let (a, b) = (
        RunDir::new(absent_path("bias-one")),
        RunDir::new(absent_path("bias-two")),
    );
    Trainer::open(biased, a.clone(), &roots())
        .unwrap()
        .run(&mut Silent)
        .unwrap();
    Trainer::open(accumulated, b.clone(), &roots())
        .unwrap()
        .run(&mut Silent)
        .unwrap();
    let (ua, ub) = (unbiased_losses(&a), unbiased_losses(&b));
    let first = ua[0].expect("a biased run logs loss_unbiased");
    assert!(first.is_finite() && first > 0.0);
    // Same batch and weights at step 1: only the chunking differs.
    assert!((first - ub[0].unwrap()).abs() < 1e-5, "{ua:?} vs {ub:?}");
    let total = f32::from_bits(train_losses(&a)[0].1) as f64;
    assert_ne!(
        first, total,
        "the unbiased loss must leave out the fixed task"
    );
    // The mean over all 8 sequences splits into 2 fixed and 6 other ones.
    let fixed_loss = (8.0 * total - 6.0 * first) / 2.0;
    assert!(fixed_loss > 0.0, "fixed-task loss {fixed_loss}");
}
