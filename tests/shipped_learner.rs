//! The learners shipped under `models/` load and reproduce, on the small
//! fixed batch of their `check.json`, the accuracy their model card states.

use gpicl::meta::RunDir;
use gpicl::run::learner_check::{check_learner, read_check};
use std::path::{Path, PathBuf};

fn shipped() -> Vec<PathBuf> {
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&models)
        .unwrap_or_else(|e| panic!("{}: {e}", models.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("config.toml").is_file())
        .collect();
    dirs.sort();
    dirs
}

#[test]
fn every_shipped_learner_reproduces_the_accuracy_of_its_model_card() {
    let dirs = shipped();
    assert!(!dirs.is_empty(), "no learner under models/");
    for dir in dirs {
        let stated = read_check(&dir).unwrap();
        let card = std::fs::read_to_string(dir.join("README.md")).unwrap();
        let measured = check_learner(&RunDir::new(&dir)).unwrap();
        assert_eq!(measured.sequences, stated.sequences);
        // One sequence of the batch flipping its last prediction is the
        // most a change of CPU (AVX2 vs AVX-512 sums) may move it.
        let tolerance = 1.0 / stated.sequences as f32 + 1e-6;
        for (dataset, groups) in &stated.acc_last {
            for (group, acc) in groups {
                let got = measured.acc_last[dataset][group];
                assert!(
                    (got - acc).abs() <= tolerance,
                    "{}: {dataset}/{group} is {got}, the card states {acc}",
                    dir.display()
                );
            }
            // The card quotes the unseen-task numbers of the check.
            let unseen = format!("{:.3}", groups["unseen"]);
            assert!(
                card.contains(&unseen),
                "{}: card lacks {dataset} unseen {unseen}",
                dir.display()
            );
        }
    }
}

#[test]
fn every_model_card_opens_with_hugging_face_metadata_that_matches_its_text() {
    for dir in shipped() {
        let card = std::fs::read_to_string(dir.join("README.md")).unwrap();
        let name = dir.display();
        let front = card
            .strip_prefix("---\n")
            .and_then(|rest| rest.split_once("\n---\n"))
            .map(|(front, _)| front)
            .unwrap_or_else(|| panic!("{name}: the card has no YAML front matter"));
        for key in [
            "license: ",
            "library_name: gpicl",
            "datasets:",
            "model-index:",
        ] {
            assert!(front.contains(key), "{name}: front matter lacks `{key}`");
        }
        let body = &card[front.len()..];
        let values: Vec<&str> = front
            .lines()
            .filter_map(|l| l.trim().strip_prefix("value: "))
            .collect();
        assert!(!values.is_empty(), "{name}: model-index states no result");
        for value in values {
            assert!(
                body.contains(value),
                "{name}: {value} is not in the card's text"
            );
        }
        assert!(body.contains("## Inference contract"), "{name}");
        assert!(body.contains("not gated"), "{name}");
    }
}

#[test]
fn shipped_learners_are_small_weights_only_checkpoints() {
    for dir in shipped() {
        let checkpoints = gpicl::meta::checkpoint::list_checkpoints(&dir.join("checkpoints"));
        assert_eq!(checkpoints.len(), 1, "{}", dir.display());
        let size = std::fs::metadata(&checkpoints[0].1).unwrap().len();
        assert!(size <= 5_000_000, "{}: {size} bytes", dir.display());
        let ckpt = gpicl::meta::checkpoint::load_checkpoint(
            &checkpoints[0].1,
            &gpicl::kernels::Device::Cpu,
        )
        .unwrap();
        assert!(
            ckpt.optimizer.tensors.is_empty(),
            "no optimiser state shipped"
        );
    }
}

#[test]
fn shipped_learners_match_their_manifest_so_a_hub_download_can_be_checked() {
    for dir in shipped() {
        gpicl::tasks::hub::verify_model_manifest(&dir).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (after editing a learner, run `cargo xtask export --manifest-only --out {}`)",
                dir.display(),
                dir.display()
            )
        });
        let manifest: gpicl::tasks::hub::ModelManifest = serde_json::from_str(
            &std::fs::read_to_string(dir.join(gpicl::tasks::hub::MODEL_MANIFEST)).unwrap(),
        )
        .unwrap();
        let listed = gpicl::tasks::hub::ModelManifest::of_dir(&dir).unwrap();
        assert_eq!(
            manifest,
            listed,
            "{}: manifest misses or lists extra files",
            dir.display()
        );
    }
}
