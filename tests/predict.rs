//! A shipped learner applied to data of one's own (`gpicl::Learner`, the
//! API behind `cargo xtask predict`).

use gpicl::kernels::rng::Rng;
use gpicl::run::predict::{index_classes, stratified_subset};
use gpicl::{Learner, PredictOptions};
use std::path::Path;

fn learner(seed: u64, ensemble: usize) -> Learner {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/gpicl-quickstart-7px");
    Learner::load(
        &dir,
        PredictOptions {
            ensemble,
            seed,
            ..PredictOptions::default()
        },
    )
    .unwrap()
}

/// `classes` Gaussian blobs in `d` dimensions, `per_class` rows each,
/// rows in a random order; centres 3 standard deviations apart.
fn blobs(classes: usize, per_class: usize, d: usize, seed: u64) -> (Vec<Vec<f32>>, Vec<usize>) {
    let mut rng = Rng::new(seed);
    let centres: Vec<Vec<f64>> = (0..classes)
        .map(|_| (0..d).map(|_| rng.normal() * 3.0).collect())
        .collect();
    let order = rng.permutation(classes * per_class);
    let mut x = Vec::new();
    let mut y = Vec::new();
    for i in order {
        let c = i % classes;
        x.push(
            centres[c]
                .iter()
                .map(|m| (m + rng.normal()) as f32)
                .collect(),
        );
        y.push(c);
    }
    (x, y)
}

fn accuracy(predicted: &[usize], actual: &[usize]) -> f64 {
    predicted.iter().zip(actual).filter(|(p, a)| p == a).count() as f64 / actual.len() as f64
}

#[test]
fn the_shipped_learner_learns_an_unseen_table_from_its_context() {
    let (x, y) = blobs(3, 30, 6, 1);
    let (train_x, test_x) = x.split_at(60);
    let (train_y, test_y) = y.split_at(60);
    let learner = learner(0, 4);
    let fitted = learner.fit(train_x, train_y).unwrap();
    let p = fitted.predict_proba(test_x).unwrap();
    for row in &p {
        assert_eq!(row.len(), 3);
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-4);
    }
    let acc = accuracy(&fitted.predict(test_x).unwrap(), test_y);
    assert!(acc >= 0.8, "accuracy {acc} on three well-separated blobs");
}

#[test]
fn ensembles_are_identical_for_a_seed_and_differ_across_seeds() {
    let (x, y) = blobs(4, 10, 5, 2);
    let (train_x, test_x) = x.split_at(30);
    let first = learner(7, 3)
        .fit(train_x, &y[..30])
        .unwrap()
        .predict_proba(test_x)
        .unwrap();
    let again = learner(7, 3)
        .fit(train_x, &y[..30])
        .unwrap()
        .predict_proba(test_x)
        .unwrap();
    assert_eq!(
        first, again,
        "the same seed gives bit-identical probabilities"
    );
    let other = learner(8, 3)
        .fit(train_x, &y[..30])
        .unwrap()
        .predict_proba(test_x)
        .unwrap();
    assert_ne!(first, other, "another seed draws other projections");
}

#[test]
fn predictions_do_not_depend_on_how_the_classes_are_numbered_or_named() {
    let (x, y) = blobs(4, 10, 5, 3);
    let (train_x, test_x) = x.split_at(30);
    let learner = learner(0, 3);
    let base = learner
        .fit(train_x, &y[..30])
        .unwrap()
        .predict_proba(test_x)
        .unwrap();
    // Rename the classes so that their first-appearance order and their
    // alphabetical order disagree, then number them by name.
    let names = ["zebra", "apple", "mango", "kiwi"];
    let renamed: Vec<String> = y[..30].iter().map(|&c| names[c].to_string()).collect();
    let mut sorted: Vec<&str> = names.to_vec();
    sorted.sort();
    let by_name: Vec<usize> = renamed
        .iter()
        .map(|n| sorted.iter().position(|s| s == n).unwrap())
        .collect();
    let moved = learner
        .fit(train_x, &by_name)
        .unwrap()
        .predict_proba(test_x)
        .unwrap();
    for (row, moved_row) in base.iter().zip(&moved) {
        for (class, name) in names.iter().enumerate() {
            let at = sorted.iter().position(|s| s == name).unwrap();
            assert_eq!(row[class], moved_row[at], "class {name}");
        }
    }
    // The command line numbers classes by first appearance.
    let (order, indices) = index_classes(&renamed);
    assert_eq!(order[0], renamed[0]);
    assert_eq!(indices.len(), 30);
}

#[test]
fn twenty_classes_and_more_rows_than_a_context_are_learned_with_output_codes() {
    // 20 classes (the learner has 10 labels), 140 training rows (its
    // context holds 99).
    let (x, y) = blobs(20, 9, 6, 4);
    let (train_x, test_x) = x.split_at(140);
    let (train_y, test_y) = y.split_at(140);
    let learner = learner(0, 2);
    let fitted = learner.fit(train_x, train_y).unwrap();
    assert_eq!(fitted.classes(), 20);
    assert!(fitted.members() >= 8, "{} members", fitted.members());
    assert!(fitted.context_rows() <= learner.context_len());
    let p = fitted.predict_proba(test_x).unwrap();
    for row in &p {
        assert_eq!(row.len(), 20);
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-4);
    }
    let acc = accuracy(&fitted.predict(test_x).unwrap(), test_y);
    assert!(acc >= 0.5, "accuracy {acc} on 20 blobs (chance 0.05)");
}

#[test]
fn a_single_class_is_refused() {
    let (x, _) = blobs(3, 2, 3, 4);
    let err = learner(0, 1)
        .fit(&x[..3], &[2, 2, 2])
        .err()
        .expect("one class is refused")
        .to_string();
    assert!(err.contains("one class"), "{err}");
}

#[test]
fn training_subsets_represent_every_class_and_follow_the_seed() {
    let y: Vec<usize> = (0..100)
        .map(|i| if i < 90 { 0 } else { 1 + i % 3 })
        .collect();
    let picked = stratified_subset(&y, 8, 5);
    assert_eq!(picked.len(), 8);
    for class in 0..4 {
        assert!(
            picked.iter().any(|&i| y[i] == class),
            "class {class} missing"
        );
    }
    assert_eq!(picked, stratified_subset(&y, 8, 5));
    assert_ne!(picked, stratified_subset(&y, 8, 6));
    assert_eq!(stratified_subset(&y, 500, 5).len(), 100);
}

/// Copies a folder (one level of sub-folders) into `to`.
fn copy_folder(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_folder(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

#[test]
fn a_learner_trained_on_normalised_features_reads_its_context_normalised() {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/gpicl-quickstart-7px");
    let dir = gpicl_testing::scratch_dir("feature-normalised-learner");
    copy_folder(&shipped, &dir);
    let config = std::fs::read_to_string(dir.join("config.toml")).unwrap();
    let config = config.replace(
        "random_fraction = 0.25\n",
        "random_fraction = 0.25\nfeature_normalization = \"per-sequence\"\n",
    );
    assert!(config.contains("per-sequence"));
    std::fs::write(dir.join("config.toml"), config).unwrap();
    let options = PredictOptions {
        ensemble: 4,
        ..PredictOptions::default()
    };
    let normalised = Learner::load(&dir, options.clone()).unwrap();
    let (x, y) = blobs(3, 30, 6, 1);
    let (train_x, test_x) = x.split_at(60);
    let (train_y, test_y) = y.split_at(60);
    let p = normalised
        .fit(train_x, train_y)
        .unwrap()
        .predict_proba(test_x)
        .unwrap();
    let plain = learner(0, 4)
        .fit(train_x, train_y)
        .unwrap()
        .predict_proba(test_x)
        .unwrap();
    let differs = p
        .iter()
        .flatten()
        .zip(plain.iter().flatten())
        .any(|(a, b)| (a - b).abs() > 1e-3);
    assert!(
        differs,
        "the per-sequence statistics change what the model reads"
    );
    for row in &p {
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-4 && row.iter().all(|v| v.is_finite()));
    }
    // Normalised blobs stay separable: the learner still reads them.
    let predicted: Vec<usize> = p
        .iter()
        .map(|row| (0..3).max_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap())
        .collect();
    let acc = accuracy(&predicted, test_y);
    assert!(acc >= 0.6, "accuracy {acc} on three well-separated blobs");
}
