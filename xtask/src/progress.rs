//! The progress bars shown while training and during a speedrun.

use gpicl::meta::record::EvalRecord;
use gpicl::meta::{MetricSink, Observer, RunRecord, TrainRecord, Trainer};
use gpicl::run::evaluate::PeriodicEval;
use gpicl::run::speedrun::SpeedrunCheck;
use indicatif::{ProgressBar, ProgressStyle};

/// The training run's observer: stops on a signal and runs the periodic
/// evaluation. What the bar shows comes through [`ProgressSink`], a metric
/// sink of the run like `metrics.jsonl` and TensorBoard.
pub struct TrainProgress {
    bar: ProgressBar,
    eval: PeriodicEval,
}

/// The training bar as a metric sink: each training record moves it (loss,
/// accuracy, steps/s, ETA), and each periodic evaluation is printed above
/// it, one line per dataset with every group's accuracy at the last
/// position.
pub struct ProgressSink {
    bar: ProgressBar,
    lines: SharedLines,
}

/// The evaluation lines being gathered, shared by a run's [`ProgressSink`]
/// and its observer, which flushes them when an evaluation is over.
type SharedLines = std::sync::Arc<std::sync::Mutex<EvalLines>>;

/// Adds the training bar of `trainer`'s run to `total` steps to the run's
/// metric sinks; returns the bar and the lines it gathers.
fn attach_bar(trainer: &mut Trainer, total: u64) -> (ProgressBar, SharedLines) {
    let bar = training_bar(trainer.step(), total);
    let lines = SharedLines::default();
    trainer.add_metric_sink(Box::new(ProgressSink {
        bar: bar.clone(),
        lines: lines.clone(),
    }));
    (bar, lines)
}

/// Prints the dataset line still being gathered, if any, above `bar`.
fn flush_lines(bar: &ProgressBar, lines: &SharedLines) {
    let line = lines.lock().unwrap_or_else(|e| e.into_inner()).flush();
    if let Some(line) = line {
        print_above(bar, line);
    }
}

impl MetricSink for ProgressSink {
    fn record(&self, record: &RunRecord) -> gpicl::meta::Result<()> {
        let mut lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        let done = match record {
            RunRecord::Train(m) => {
                show_step(&self.bar, m);
                lines.flush()
            }
            RunRecord::Eval(e) => lines.push(e),
            _ => None,
        };
        if let Some(line) = done {
            print_above(&self.bar, line);
        }
        Ok(())
    }
}

impl Drop for ProgressSink {
    fn drop(&mut self) {
        flush_lines(&self.bar, &self.lines);
    }
}

/// Gathers a periodic evaluation's records (one per dataset and group, in
/// order) into one line per dataset.
#[derive(Default)]
struct EvalLines {
    /// (step, dataset, "group acc" parts) of the dataset being gathered.
    pending: Option<(u64, String, Vec<String>)>,
}

impl EvalLines {
    /// Takes one record; returns the previous dataset's line when this
    /// record starts another.
    fn push(&mut self, e: &EvalRecord) -> Option<String> {
        let same = matches!(&self.pending, Some((step, dataset, _)) if *step == e.step && *dataset == e.dataset);
        let done = if same { None } else { self.flush() };
        let (_, _, parts) = self
            .pending
            .get_or_insert_with(|| (e.step, e.dataset.clone(), Vec::new()));
        parts.push(format!("{} {:.3}", e.group, e.acc_last));
        done
    }

    /// The line of the dataset being gathered, if any.
    fn flush(&mut self) -> Option<String> {
        self.pending.take().map(|(step, dataset, parts)| {
            format!(
                "step {step:>6} eval {dataset}: acc@last {}",
                parts.join(", ")
            )
        })
    }
}

/// The training bar: steps, loss and accuracy, steps/s and ETA.
fn training_bar(start: u64, total: u64) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:32} {pos}/{len} {msg} {per_sec} ETA {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_position(start);
    bar.reset_eta();
    bar
}

fn show_step(bar: &ProgressBar, m: &TrainRecord) {
    bar.set_position(m.step);
    bar.set_message(format!(
        "loss {:.4} acc {:.3} last {:.3}",
        m.loss, m.acc, m.acc_last
    ));
}

/// A bar counting `unit`s done (on stderr, hidden when it is not a
/// terminal), with the rate and the time left.
pub fn count_bar(what: &str, unit: &str) -> ProgressBar {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{{spinner}} {what} [{{elapsed_precise}}] {{bar:32}} {{pos}}/{{len}} {unit} {{per_sec}} ETA {{eta}}"
        ))
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar
}

/// Prints `line` above the bar (or plainly when the bar is hidden).
fn print_above(bar: &ProgressBar, line: String) {
    // A hidden bar (output is not a terminal) also drops println.
    if bar.is_hidden() {
        outln!("{line}");
    } else {
        bar.println(line);
    }
}

impl TrainProgress {
    /// The observer of `trainer`'s run to `total` steps, its bar added to
    /// the run's metric sinks.
    pub fn new(trainer: &mut Trainer, total: u64, eval: PeriodicEval) -> Self {
        let (bar, _) = attach_bar(trainer, total);
        Self { bar, eval }
    }

    pub fn finish(&self) {
        self.bar.finish();
    }
}

impl Observer for TrainProgress {
    fn stop_requested(&mut self) -> Option<String> {
        crate::signals::received().map(String::from)
    }

    fn on_eval(&mut self, trainer: &Trainer) -> gpicl::meta::Result<()> {
        self.eval.on_eval(trainer)
    }
}

/// The observer of a speedrun: stops on a signal or when the learner bar
/// holds, and checks the bar. Its training bar is a [`ProgressSink`] like
/// `train`'s: training records move it and each check's evaluation records
/// are printed above it, one line per dataset, followed by the verdict.
pub struct SpeedrunProgress {
    bar: ProgressBar,
    lines: SharedLines,
    pub check: SpeedrunCheck,
}

impl SpeedrunProgress {
    /// The observer of `trainer`'s speedrun to at most `total` steps.
    pub fn new(trainer: &mut Trainer, total: u64, check: SpeedrunCheck) -> Self {
        let (bar, lines) = attach_bar(trainer, total);
        Self { bar, lines, check }
    }

    pub fn finish(&self) {
        self.bar.finish();
    }
}

impl Observer for SpeedrunProgress {
    fn stop_requested(&mut self) -> Option<String> {
        crate::signals::received()
            .map(String::from)
            .or_else(|| self.check.stop_requested())
    }

    fn on_eval(&mut self, trainer: &Trainer) -> gpicl::meta::Result<()> {
        let before = self.check.checks().len();
        self.check.on_eval(trainer)?;
        self.show_checks_after(before);
        Ok(())
    }
}

impl SpeedrunProgress {
    /// Checks the bar on the trainer's model as it is now (the run's last
    /// step, which the trainer leaves to its caller) and shows the check.
    pub fn check_now(&mut self, trainer: &Trainer) -> gpicl::run::Result<()> {
        let before = self.check.checks().len();
        self.check.check(trainer)?;
        self.show_checks_after(before);
        Ok(())
    }

    /// Prints the evaluation lines still gathered, then the verdict of
    /// every check after the first `before`.
    fn show_checks_after(&self, before: usize) {
        flush_lines(&self.bar, &self.lines);
        for c in self.check.checks().iter().skip(before) {
            let verdict = if c.passed { "bar holds" } else { "not yet" };
            print_above(
                &self.bar,
                format!("step {:>6} check at {:>7.1}s: {verdict}", c.step, c.seconds),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(step: u64, dataset: &str, group: &str, acc_last: f32) -> EvalRecord {
        EvalRecord {
            step,
            dataset: dataset.into(),
            group: group.into(),
            acc_first: 0.0,
            acc_last,
            loss_last: 0.0,
        }
    }

    #[test]
    fn an_evaluation_is_printed_as_one_line_per_dataset_once_the_next_record_comes() {
        let mut lines = EvalLines::default();
        assert_eq!(lines.push(&record(200, "mnist", "seen", 0.5)), None);
        assert_eq!(lines.push(&record(200, "mnist", "unseen", 0.25)), None);
        assert_eq!(
            lines.push(&record(200, "random", "seen", 1.0)).as_deref(),
            Some("step    200 eval mnist: acc@last seen 0.500, unseen 0.250")
        );
        assert_eq!(
            lines.flush().as_deref(),
            Some("step    200 eval random: acc@last seen 1.000")
        );
        assert_eq!(lines.flush(), None);
        // The same dataset at a later step is a new line.
        lines.push(&record(400, "random", "seen", 1.0));
        assert!(lines.push(&record(600, "random", "seen", 1.0)).is_some());
    }
}
