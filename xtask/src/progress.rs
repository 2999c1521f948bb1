//! The progress bars shown while training and during a speedrun.

use gpicl::eval::run::PeriodicEval;
use gpicl::eval::speedrun::SpeedrunCheck;
use gpicl::meta::{Observer, TrainRecord, Trainer};
use indicatif::{ProgressBar, ProgressStyle};

/// Shows loss, accuracy, steps/s and ETA, and prints periodic evaluations
/// above the bar.
pub struct TrainProgress {
    bar: ProgressBar,
    eval: PeriodicEval,
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
    pub fn new(start: u64, total: u64, eval: PeriodicEval) -> Self {
        Self {
            bar: training_bar(start, total),
            eval,
        }
    }

    pub fn finish(&self) {
        self.bar.finish();
    }
}

impl Observer for TrainProgress {
    fn stop_requested(&mut self) -> Option<String> {
        crate::signals::received().map(String::from)
    }

    fn on_step(&mut self, m: &TrainRecord) {
        show_step(&self.bar, m);
    }

    fn on_eval(&mut self, trainer: &Trainer) -> gpicl::meta::Result<()> {
        self.eval.on_eval(trainer)?;
        if let Some(report) = &self.eval.last {
            for (dataset, groups) in &report.datasets {
                let parts: Vec<String> = groups
                    .iter()
                    .map(|(g, r)| format!("{g} {:.3}", r.acc_last))
                    .collect();
                let line = format!(
                    "step {:>6} eval {dataset}: acc@last {}",
                    report.step,
                    parts.join(", ")
                );
                print_above(&self.bar, line);
            }
        }
        Ok(())
    }
}

/// The training bar of a speedrun, with each check of the learner bar
/// printed above it.
pub struct SpeedrunProgress {
    bar: ProgressBar,
    pub check: SpeedrunCheck,
}

impl SpeedrunProgress {
    pub fn new(total: u64, check: SpeedrunCheck) -> Self {
        Self {
            bar: training_bar(0, total),
            check,
        }
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

    fn on_step(&mut self, m: &TrainRecord) {
        show_step(&self.bar, m);
    }

    fn on_eval(&mut self, trainer: &Trainer) -> gpicl::meta::Result<()> {
        let before = self.check.checks().len();
        self.check.on_eval(trainer)?;
        if let Some(c) = self.check.checks().get(before) {
            let parts: Vec<String> = c
                .accuracy
                .iter()
                .map(|(d, a)| format!("{d} {a:.3}"))
                .collect();
            let verdict = if c.passed { "bar holds" } else { "not yet" };
            print_above(
                &self.bar,
                format!(
                    "step {:>6} check at {:>7.1}s: {}: {verdict}",
                    c.step,
                    c.seconds,
                    parts.join(", ")
                ),
            );
        }
        Ok(())
    }
}
