//! Real processes whose stdout is a pipe with no reader (`xtask … | head`):
//! they must neither panic nor stop early.

use gpicl::meta::checkpoint::list_checkpoints;
use gpicl::meta::RunDir;
use gpicl_testing::absent_path;
use std::process::{Command, Output, Stdio};

/// Runs `cmd` with stdout a pipe whose read end is already closed.
fn with_closed_stdout(mut cmd: Command) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    cmd.stdout(writer).stderr(Stdio::piped());
    let child = cmd.spawn().unwrap();
    drop(cmd);
    child.wait_with_output().unwrap()
}

fn assert_clean(output: &Output) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(output.status.success(), "{:?}: {stderr}", output.status);
}

#[test]
fn data_list_into_a_closed_pipe_exits_cleanly_without_a_panic() {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
    cmd.args(["data", "list"]);
    assert_clean(&with_closed_stdout(cmd));
}

/// A `steps`-step run of a tiny model, checkpointed every three steps.
fn tiny_train(out: &std::path::Path, steps: u64) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
    cmd.args(["train", "--preset", "small", "--no-eval", "--out"])
        .arg(out)
        .args(["--image-size", "7", "--d-model", "16", "--layers", "1"])
        .args(["--heads", "2", "--key-size", "8", "--tasks-per-step", "2"])
        .args(["--seqs-per-task", "2", "--seq-len", "10", "--steps"])
        .arg(steps.to_string())
        .args(["--set", "schedule.checkpoint_every=3"])
        .args(["--set", "schedule.eval_every=0"])
        .env("RAYON_NUM_THREADS", "1");
    cmd
}

#[test]
fn training_into_a_closed_pipe_runs_every_step_and_writes_its_final_checkpoint() {
    let out = absent_path("closed-pipe-train");
    let output = with_closed_stdout(tiny_train(&out, 6));
    assert_clean(&output);
    let run = RunDir::new(out.clone());
    let last = list_checkpoints(&run.checkpoints()).pop().map(|(s, _)| s);
    assert_eq!(last, Some(6), "every step ran");
    std::fs::remove_dir_all(out).ok();
}

fn eval_ood(run: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["eval-ood", "--datasets", "random", "--run"])
        .arg(run)
        .args([
            "--set",
            "eval.tasks_per_group=1",
            "--set",
            "eval.seqs_per_task=2",
        ])
        .env("RAYON_NUM_THREADS", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

#[test]
fn eval_ood_refuses_a_run_that_is_training_and_names_a_corrupt_checkpoint_it_skips() {
    let out = absent_path("eval-locked");
    let trained = tiny_train(&out, 6).stdout(Stdio::null()).output().unwrap();
    assert_clean(&trained);
    let run = RunDir::new(out.clone());
    {
        // A training process holds the run.
        let _held = gpicl::meta::RunLock::acquire(&out, "train").unwrap();
        let output = eval_ood(&out);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{stderr}");
        assert!(stderr.contains("in use"), "{stderr}");
        assert!(!run.eval().join("eval.json").exists(), "no finished marker");
    }
    let newest = list_checkpoints(&run.checkpoints()).pop().unwrap().1;
    std::fs::write(&newest, b"not a checkpoint").unwrap();
    let output = eval_ood(&out);
    assert_clean(&output);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("step-000000006.safetensors") && stderr.contains("skipped"),
        "{stderr}"
    );
    assert!(run.eval().join("eval.json").exists());
    std::fs::remove_dir_all(out).ok();
}

#[test]
fn print_config_reads_a_config_from_a_pipe_once_and_shows_it() {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["train", "--config", "/dev/stdin", "--print-config"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"seed = 4242\n")
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert_clean(&output);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("seed = 4242"), "{stdout}");
}

/// Train records in `dir`'s metrics.jsonl (0 while it does not exist).
fn logged_steps(dir: &RunDir) -> usize {
    std::fs::read_to_string(dir.metrics())
        .map(|t| {
            t.lines()
                .filter(|l| l.contains("\"kind\":\"train\""))
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn sigterm_checkpoints_the_last_finished_step_and_exits_with_a_message() {
    let out = absent_path("sigterm");
    let mut cmd = tiny_train(&out, 1_000_000);
    cmd.args(["--set", "schedule.checkpoint_every=1000000"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let child = cmd.spawn().unwrap();
    let run = RunDir::new(out.clone());
    let started = std::time::Instant::now();
    while logged_steps(&run) < 3 {
        assert!(started.elapsed().as_secs() < 120, "training never started");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains("stopped by SIGTERM"), "{stderr}");
    let newest = list_checkpoints(&run.checkpoints()).pop().map(|(s, _)| s);
    assert_eq!(
        newest,
        Some(logged_steps(&run) as u64),
        "the checkpoint holds every logged step"
    );
    std::fs::remove_dir_all(out).ok();
}

#[cfg(unix)]
#[test]
fn a_second_signal_exits_at_once_without_waiting_for_the_step() {
    let out = absent_path("second-signal");
    let mut cmd = tiny_train(&out, 1_000_000);
    // Steps of several seconds, so that both signals land inside one step.
    for assignment in [
        "data.image_size=14",
        "batch.seq_len=100",
        "batch.tasks_per_step=8",
        "batch.seqs_per_task=16",
        "model.d_model=256",
        "model.num_layers=4",
        "model.num_heads=8",
        "model.key_size=32",
        "schedule.checkpoint_every=1000000",
    ] {
        cmd.args(["--set", assignment]);
    }
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let run = RunDir::new(out.clone());
    let started = std::time::Instant::now();
    while logged_steps(&run) < 1 {
        assert!(started.elapsed().as_secs() < 300, "training never started");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // The next step has just begun: it takes far longer than the two signals.
    let step_started = std::time::Instant::now();
    let steps_before = logged_steps(&run);
    let signal = || {
        let sent = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
    };
    signal();
    std::thread::sleep(std::time::Duration::from_millis(20));
    signal();
    let status = child.wait().unwrap();
    let waited = step_started.elapsed();
    assert_eq!(status.code(), Some(128 + 15), "exit status {status:?}");
    assert_eq!(logged_steps(&run), steps_before, "no further step finished");
    assert!(
        list_checkpoints(&run.checkpoints()).is_empty(),
        "no checkpoint after the second signal"
    );
    assert!(waited.as_secs() < 30, "took {waited:?}");
    std::fs::remove_dir_all(out).ok();
}
