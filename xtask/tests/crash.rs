//! Kill -9 at random moments, resume, repeat: the run that survives many
//! kills (during checkpoint writes, metrics appends and everything else)
//! must equal one that was never interrupted, bit for bit, and its
//! `metrics.jsonl` must hold every step exactly once.

use gpicl::kernels::Device;
use gpicl::meta::checkpoint::{list_checkpoints, load_checkpoint};
use gpicl::meta::{MetricsLog, RunDir, RunRecord};
use gpicl_testing::absent_path;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const STEPS: u64 = 300;
const KILLS: usize = 25;

fn train(out: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
    cmd.args(["train", "--preset", "small", "--no-eval", "--out"])
        .arg(out)
        .args([
            "--image-size",
            "7",
            "--d-model",
            "16",
            "--layers",
            "1",
            "--heads",
            "2",
        ])
        .args([
            "--key-size",
            "8",
            "--tasks-per-step",
            "2",
            "--seqs-per-task",
            "4",
        ])
        .args(["--seq-len", "20", "--steps", &STEPS.to_string()])
        .args([
            "--set",
            "schedule.checkpoint_every=1",
            "--set",
            "schedule.eval_every=0",
        ])
        .args(["--set", "tasks.permute_labels_prob=0.5"])
        .env("RAYON_NUM_THREADS", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

/// `(step, loss bits)` of every train record, in file order.
fn train_records(dir: &RunDir) -> Vec<(u64, u32)> {
    MetricsLog::open(&dir.metrics())
        .read()
        .unwrap()
        .iter()
        .filter_map(RunRecord::as_train)
        .map(|t| (t.step, t.loss.to_bits()))
        .collect()
}

fn final_weights(dir: &RunDir) -> Vec<(String, Vec<f32>)> {
    let (step, path) = list_checkpoints(&dir.checkpoints()).pop().unwrap();
    assert_eq!(step, STEPS);
    load_checkpoint(&path, &Device::Cpu)
        .unwrap()
        .params
        .into_iter()
        .map(|(name, t)| (name, t.flatten_all().unwrap().to_vec1().unwrap()))
        .collect()
}

#[test]
fn a_run_killed_at_random_moments_resumes_to_exactly_the_uninterrupted_result() {
    let reference = RunDir::new(absent_path("reference"));
    let started = Instant::now();
    assert!(train(reference.root()).status().unwrap().success());
    let whole = started.elapsed();

    let crashed = RunDir::new(absent_path("killed"));
    // A fixed sequence of kill delays (a small LCG), spread over the time
    // a whole run takes, so kills land in start-up, steps, checkpoint
    // writes and metrics appends alike.
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut kills = 0;
    let mut kills_after_a_checkpoint = 0;
    for _ in 0..4 * KILLS {
        if kills == KILLS {
            break;
        }
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        let fraction = 0.01 + 0.08 * ((state >> 11) as f64 / (1u64 << 53) as f64);
        let mut child = train(crashed.root()).spawn().unwrap();
        std::thread::sleep(whole.mul_f64(fraction));
        if child.try_wait().unwrap().is_some() {
            break; // finished: nothing left to interrupt
        }
        child.kill().unwrap();
        child.wait().unwrap();
        kills += 1;
        if !list_checkpoints(&crashed.checkpoints()).is_empty() {
            kills_after_a_checkpoint += 1;
        }
    }
    assert!(
        kills >= KILLS / 2 && kills_after_a_checkpoint >= 5,
        "only {kills} kills ({kills_after_a_checkpoint} once training had begun)"
    );
    // Then let it finish.
    let deadline = Instant::now() + Duration::from_secs(600);
    while !train(crashed.root()).status().unwrap().success() {
        assert!(Instant::now() < deadline, "the killed run never finished");
    }

    let records = train_records(&crashed);
    let steps: Vec<u64> = records.iter().map(|r| r.0).collect();
    assert_eq!(
        steps,
        (1..=STEPS).collect::<Vec<_>>(),
        "each step exactly once, in order"
    );
    assert_eq!(records, train_records(&reference), "bit-identical losses");
    assert_eq!(final_weights(&crashed), final_weights(&reference));
    std::fs::remove_dir_all(reference.root()).ok();
    std::fs::remove_dir_all(crashed.root()).ok();
}

#[test]
fn a_second_train_process_on_the_same_folder_is_refused_with_the_holders_pid() {
    let dir = absent_path("two");
    let mut first = train(&dir).spawn().unwrap();
    // Wait until the first holds the folder.
    let lock = dir.join("run.lock");
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::read_to_string(&lock).map_or(true, |t| !t.contains("\"pid\"")) {
        assert!(Instant::now() < deadline, "the first run never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let second = train(&dir).stderr(Stdio::piped()).output().unwrap();
    let still_running = first.try_wait().unwrap().is_none();
    first.kill().ok();
    first.wait().unwrap();
    if still_running {
        assert!(!second.status.success());
        let err = String::from_utf8_lossy(&second.stderr);
        assert!(
            err.contains(&format!("PID {}", first.id())) && err.contains("in use"),
            "{err}"
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}
