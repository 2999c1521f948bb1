//! The progress bar shown while training.

use gpicl::eval::run::PeriodicEval;
use gpicl::meta::{Observer, TrainRecord, Trainer};
use indicatif::{ProgressBar, ProgressStyle};

/// Shows loss, accuracy, steps/s and ETA, and prints periodic evaluations
/// above the bar.
pub struct TrainProgress {
    bar: ProgressBar,
    eval: PeriodicEval,
}

impl TrainProgress {
    pub fn new(start: u64, total: u64, eval: PeriodicEval) -> Self {
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

    fn on_step(&mut self, m: &TrainRecord) {
        self.bar.set_position(m.step);
        self.bar.set_message(format!(
            "loss {:.4} acc {:.3} last {:.3}",
            m.loss, m.acc, m.acc_last
        ));
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
                // A hidden bar (output is not a terminal) also drops println.
                if self.bar.is_hidden() {
                    outln!("{line}");
                } else {
                    self.bar.println(line);
                }
            }
        }
        Ok(())
    }
}
