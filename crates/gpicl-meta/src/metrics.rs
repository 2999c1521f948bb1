//! `metrics.jsonl`: one [`RunRecord`] per line, appended as training goes
//! — the source of truth of a run — and handed on to the run's other
//! [`MetricSink`]s: TensorBoard event files when asked
//! ([`MetricsLog::with_tensorboard`]), or any sink of one's own
//! ([`MetricsLog::with_sink`]).

use crate::error::{MetaError, Result};
use crate::record::{parse_record, read_records, RunRecord};
use crate::tensorboard::EventWriter;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Somewhere a run's records go besides `metrics.jsonl`: TensorBoard
/// ([`EventWriter`]), an experiment tracker, a live display. A sink sees
/// every record after it is in `metrics.jsonl`, in the same order.
pub trait MetricSink: Send {
    /// Takes one record.
    fn record(&self, record: &RunRecord) -> Result<()>;
}

impl MetricSink for EventWriter {
    fn record(&self, record: &RunRecord) -> Result<()> {
        EventWriter::record(self, record)
    }
}

/// An append-only JSON-lines log of [`RunRecord`]s: the one writer of a
/// run's `metrics.jsonl`, handing each record on to its sinks.
pub struct MetricsLog {
    path: PathBuf,
    sinks: Vec<Box<dyn MetricSink>>,
}

impl MetricsLog {
    /// Opens (creating) `path`.
    pub fn open(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
            sinks: Vec::new(),
        }
    }

    /// Also hands every appended record to `sink`.
    pub fn with_sink(mut self, sink: Box<dyn MetricSink>) -> Self {
        self.add_sink(sink);
        self
    }

    /// [`MetricsLog::with_sink`] on a log in use.
    pub fn add_sink(&mut self, sink: Box<dyn MetricSink>) {
        self.sinks.push(sink);
    }

    /// Also writes every appended record's scalars to a new TensorBoard
    /// event file in `dir` (`schedule.tensorboard`).
    pub fn with_tensorboard(self, dir: &Path) -> Result<Self> {
        Ok(self.with_sink(Box::new(EventWriter::create(dir)?)))
    }

    /// The log's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record.
    pub fn append(&self, record: &RunRecord) -> Result<()> {
        let mut line = serde_json::to_string(record).expect("metrics serialise");
        line.push('\n');
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(MetaError::io(&self.path))?;
        f.write_all(line.as_bytes())
            .map_err(MetaError::io(&self.path))?;
        self.sinks.iter().try_for_each(|sink| sink.record(record))
    }

    /// Drops records of steps after `step`, written by a run that died
    /// after its last checkpoint, so the resumed run's log has each step
    /// once.
    pub fn truncate_after(&self, step: u64) -> Result<()> {
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(MetaError::io(&self.path)(e)),
        };
        // A process killed mid-append leaves a torn last line: lines that
        // are not records are dropped with the steps to be redone.
        // Only the last line can be torn: a damaged line before it was
        // damaged after it was written, and is not dropped without a word.
        let text = String::from_utf8_lossy(&bytes);
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate().take(lines.len().saturating_sub(1)) {
            if let Err(e) = parse_record(line) {
                return Err(MetaError::Corrupt {
                    path: self.path.clone(),
                    reason: format!(
                        "line {} is not a record ({e}); only a torn last line is dropped on resume: repair or remove that line",
                        i + 1
                    ),
                });
            }
        }
        let kept: String = lines
            .iter()
            .filter(|line| parse_record(line).is_ok_and(|r| r.step() <= step))
            .map(|l| format!("{l}\n"))
            .collect();
        crate::run_dir::write_atomically(&self.path, kept.as_bytes())
    }

    /// Every record, in file order (see [`read_records`]).
    pub fn read(&self) -> Result<Vec<RunRecord>> {
        read_records(&self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gpicl_testing::scratch_dir;

    /// A sink that keeps the steps it was handed.
    struct Steps(std::sync::Arc<std::sync::Mutex<Vec<u64>>>);

    impl MetricSink for Steps {
        fn record(&self, record: &RunRecord) -> Result<()> {
            if let RunRecord::Train(t) = record {
                self.0.lock().unwrap().push(t.step);
            }
            Ok(())
        }
    }

    #[test]
    fn every_sink_sees_each_record_after_the_jsonl_file_holds_it() {
        let dir = scratch_dir("metric-sinks");
        let seen = [Default::default(), Default::default()];
        let log = MetricsLog::open(&dir.join("metrics.jsonl"))
            .with_sink(Box::new(Steps(std::sync::Arc::clone(&seen[0]))))
            .with_sink(Box::new(Steps(std::sync::Arc::clone(&seen[1]))));
        for step in [1, 2, 3] {
            log.append(&RunRecord::Train(crate::TrainRecord {
                step,
                ..Default::default()
            }))
            .unwrap();
        }
        for sink in &seen {
            assert_eq!(*sink.lock().unwrap(), vec![1, 2, 3]);
        }
        assert_eq!(log.read().unwrap().len(), 3);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn line(step: u64) -> String {
        serde_json::to_string(&RunRecord::Train(crate::TrainRecord {
            step,
            ..Default::default()
        }))
        .unwrap()
    }

    fn log_with(tag: &str, text: &str) -> MetricsLog {
        let dir = scratch_dir(&format!("metrics-{tag}"));
        let path = dir.join("metrics.jsonl");
        std::fs::write(&path, text).unwrap();
        MetricsLog::open(&path)
    }

    #[test]
    fn a_torn_last_line_is_ignored_when_reading_and_dropped_when_resuming() {
        let log = log_with(
            "torn",
            &format!("{}\n{}\n{{\"kind\":\"tr", line(1), line(2)),
        );
        assert_eq!(log.read().unwrap().len(), 2);
        log.truncate_after(1).unwrap();
        assert_eq!(
            std::fs::read_to_string(&log.path).unwrap(),
            format!("{}\n", line(1))
        );
    }

    #[test]
    fn a_damaged_middle_line_is_refused_on_resume_instead_of_dropped_silently() {
        let text = format!("{}\nnot json\n{}\n", line(1), line(2));
        let log = log_with("middle-resume", &text);
        let err = log.truncate_after(2).unwrap_err().to_string();
        assert!(
            err.contains("line 2") && err.contains("metrics.jsonl"),
            "{err}"
        );
        assert_eq!(
            std::fs::read_to_string(&log.path).unwrap(),
            text,
            "left as it was"
        );
    }

    #[test]
    fn a_damaged_line_in_the_middle_is_an_error_naming_the_line() {
        let log = log_with("middle", &format!("{}\nnot json\n{}\n", line(1), line(2)));
        let err = log.read().unwrap_err().to_string();
        assert!(
            err.contains("line 2") && err.contains("metrics.jsonl"),
            "{err}"
        );
    }
}
