//! TensorBoard event files: a second sink for a run's metrics beside
//! `metrics.jsonl` (`schedule.tensorboard = true`), readable by
//! TensorBoard, and by Weights & Biases' TensorBoard sync.
//!
//! The format is TensorFlow's record file of `Event` protocol buffers:
//! each record is its length (u64, little-endian), the masked CRC-32C of
//! that length, the bytes, and their masked CRC-32C. The first event names
//! the file version; every other event holds scalar summaries at a step.
//! The messages are the fields of TensorFlow's `event.proto` and
//! `summary.proto` that scalars need, encoded by `prost`; the CRC is the
//! `crc32c` crate's. A process writes its own file
//! (`events.out.tfevents.<seconds>.<host>.<pid>`); a resumed run writes
//! steps again from its checkpoint, and TensorBoard discards the orphaned
//! later steps of the earlier file when it sees a step go back.
//!
//! ```
//! use gpicl_meta::tensorboard::EventWriter;
//! let dir = std::env::temp_dir().join(format!("gpicl-tb-doc-{}", std::process::id()));
//! let writer = EventWriter::create(&dir)?;
//! writer.scalars(10, &[("train/loss", 2.3)])?;
//! assert!(writer.path().starts_with(&dir));
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok::<(), gpicl_meta::MetaError>(())
//! ```

use crate::error::{MetaError, Result};
use crate::record::RunRecord;
use prost::Message;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Appends events to one TensorBoard event file.
pub struct EventWriter {
    path: PathBuf,
}

impl EventWriter {
    /// Creates `dir` if needed and a new event file in it, starting with
    /// the file-version event.
    pub fn create(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(MetaError::io(dir))?;
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| {
                !h.is_empty()
                    && h.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
            })
            .unwrap_or_else(|| "localhost".into());
        let name = format!(
            "events.out.tfevents.{}.{host}.{}",
            wall_time() as u64,
            std::process::id()
        );
        let writer = Self {
            path: dir.join(name),
        };
        writer.append(&Event {
            wall_time: wall_time(),
            step: 0,
            what: Some(What::FileVersion("brain.Event:2".into())),
        })?;
        Ok(writer)
    }

    /// The event file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// One event with these scalars (`tag`, value) at `step`.
    pub fn scalars(&self, step: u64, values: &[(&str, f64)]) -> Result<()> {
        let value = values
            .iter()
            .map(|(tag, value)| SummaryValue {
                tag: tag.to_string(),
                value: Some(ValueKind::SimpleValue(*value as f32)),
            })
            .collect();
        self.append(&Event {
            wall_time: wall_time(),
            step: step as i64,
            what: Some(What::Summary(Summary { value })),
        })
    }

    /// Writes the scalars a [`RunRecord`] holds: a training step's loss,
    /// accuracies, gradient norm and learning rate (`train/…`), an
    /// evaluation's accuracies and loss (`eval/<dataset>/<group>/…`).
    /// Other records have no scalars and write nothing.
    pub fn record(&self, record: &RunRecord) -> Result<()> {
        match record {
            RunRecord::Train(t) => {
                let mut values = vec![
                    ("train/loss", t.loss as f64),
                    ("train/acc", t.acc as f64),
                    ("train/acc_last", t.acc_last as f64),
                    ("train/grad_norm", t.grad_norm),
                    ("train/lr", t.lr),
                    ("train/seconds_per_step", t.seconds),
                ];
                if let Some(loss) = t.loss_unbiased {
                    values.push(("train/loss_unbiased", loss as f64));
                }
                self.scalars(t.step, &values)
            }
            RunRecord::Eval(e) => {
                let tag = |what: &str| format!("eval/{}/{}/{what}", e.dataset, e.group);
                let (acc_last, acc_first, loss_last) =
                    (tag("acc_last"), tag("acc_first"), tag("loss_last"));
                self.scalars(
                    e.step,
                    &[
                        (&acc_last, e.acc_last as f64),
                        (&acc_first, e.acc_first as f64),
                        (&loss_last, e.loss_last as f64),
                    ],
                )
            }
            _ => Ok(()),
        }
    }

    /// Appends one event as a record: its length, the length's masked
    /// CRC, the encoded event and its masked CRC.
    fn append(&self, event: &Event) -> Result<()> {
        let data = event.encode_to_vec();
        let len = (data.len() as u64).to_le_bytes();
        let mut bytes = Vec::with_capacity(data.len() + 16);
        bytes.extend_from_slice(&len);
        bytes.extend_from_slice(&masked_crc32c(&len).to_le_bytes());
        bytes.extend_from_slice(&data);
        bytes.extend_from_slice(&masked_crc32c(&data).to_le_bytes());
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(MetaError::io(&self.path))?;
        f.write_all(&bytes).map_err(MetaError::io(&self.path))
    }
}

/// Writes every scalar of the `metrics.jsonl` at `metrics` (the source of
/// truth of a run, [`crate::read_records`]) into a new event file in `dir`:
/// TensorBoard for a run made without `schedule.tensorboard`. Returns the
/// file and the number of records written.
pub fn export_metrics(metrics: &Path, dir: &Path) -> Result<(PathBuf, usize)> {
    let records = crate::record::read_records(metrics)?;
    let writer = EventWriter::create(dir)?;
    for record in &records {
        writer.record(record)?;
    }
    Ok((writer.path, records.len()))
}

/// One scalar read back from an event file.
#[derive(Clone, Debug, PartialEq)]
pub struct Scalar {
    /// The event's step.
    pub step: u64,
    /// The scalar's tag (`train/loss`, `eval/mnist/unseen/acc_last`, …).
    pub tag: String,
    /// Its value.
    pub value: f32,
}

/// Reads every scalar of the event file at `path` back, in order, checking
/// the framing (each record's length and data against their masked
/// CRC-32C): what TensorBoard will show, for tests and tools.
pub fn read_scalars(path: &Path) -> Result<Vec<Scalar>> {
    let bytes = std::fs::read(path).map_err(MetaError::io(path))?;
    let corrupt = |at: usize, what: &str| MetaError::Corrupt {
        path: path.to_path_buf(),
        reason: format!("not a TensorBoard event file: {what} at byte {at}"),
    };
    let mut scalars = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let header = bytes
            .get(at..at + 12)
            .ok_or_else(|| corrupt(at, "a cut record header"))?;
        let (len_bytes, len_crc) = header.split_at(8);
        if u32::from_le_bytes(len_crc.try_into().unwrap_or_default()) != masked_crc32c(len_bytes) {
            return Err(corrupt(at, "a length whose CRC does not match"));
        }
        let len = u64::from_le_bytes(len_bytes.try_into().unwrap_or_default());
        let end = usize::try_from(len)
            .ok()
            .and_then(|len| (at + 12).checked_add(len))
            .filter(|&end| end + 4 <= bytes.len())
            .ok_or_else(|| corrupt(at, "a record longer than the file"))?;
        let data = &bytes[at + 12..end];
        let crc = u32::from_le_bytes(bytes[end..end + 4].try_into().unwrap_or_default());
        if crc != masked_crc32c(data) {
            return Err(corrupt(at, "data whose CRC does not match"));
        }
        let event = Event::decode(data).map_err(|_| corrupt(at, "an undecodable event"))?;
        if let Some(What::Summary(summary)) = event.what {
            for value in summary.value {
                if let Some(ValueKind::SimpleValue(v)) = value.value {
                    scalars.push(Scalar {
                        step: event.step.max(0) as u64,
                        tag: value.tag,
                        value: v,
                    });
                }
            }
        }
        at = end + 4;
    }
    Ok(scalars)
}

/// TensorFlow's `Event` (`tensorflow/core/util/event.proto`): the fields
/// scalars need.
#[derive(Clone, PartialEq, prost::Message)]
struct Event {
    #[prost(double, tag = "1")]
    wall_time: f64,
    #[prost(int64, tag = "2")]
    step: i64,
    #[prost(oneof = "What", tags = "3, 5")]
    what: Option<What>,
}

/// What an [`Event`] holds.
#[derive(Clone, PartialEq, prost::Oneof)]
enum What {
    #[prost(string, tag = "3")]
    FileVersion(String),
    #[prost(message, tag = "5")]
    Summary(Summary),
}

/// TensorFlow's `Summary` (`tensorflow/core/framework/summary.proto`).
#[derive(Clone, PartialEq, prost::Message)]
struct Summary {
    #[prost(message, repeated, tag = "1")]
    value: Vec<SummaryValue>,
}

/// `Summary.Value`: a tag and, for a scalar, its `simple_value` (a oneof
/// member, so a zero is written too).
#[derive(Clone, PartialEq, prost::Message)]
struct SummaryValue {
    #[prost(string, tag = "1")]
    tag: String,
    #[prost(oneof = "ValueKind", tags = "2")]
    value: Option<ValueKind>,
}

/// The kind of a [`SummaryValue`].
#[derive(Clone, PartialEq, prost::Oneof)]
enum ValueKind {
    #[prost(float, tag = "2")]
    SimpleValue(f32),
}

fn wall_time() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// TensorFlow's masked CRC-32C, so that a CRC of data holding CRCs stays
/// strong.
fn masked_crc32c(data: &[u8]) -> u32 {
    crc32c::crc32c(data)
        .rotate_right(15)
        .wrapping_add(0xa282_ead8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{EvalRecord, TrainRecord};

    /// Reads the records of an event file back, checking both CRCs of each.
    fn read_records(path: &Path) -> Vec<Vec<u8>> {
        let bytes = std::fs::read(path).unwrap();
        let mut at = 0;
        let mut records = Vec::new();
        while at < bytes.len() {
            let len_bytes = &bytes[at..at + 8];
            let len = u64::from_le_bytes(len_bytes.try_into().unwrap()) as usize;
            let crc = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap());
            assert_eq!(crc, masked_crc32c(len_bytes), "length CRC");
            let data = bytes[at + 12..at + 12 + len].to_vec();
            let crc = u32::from_le_bytes(bytes[at + 12 + len..at + 16 + len].try_into().unwrap());
            assert_eq!(crc, masked_crc32c(&data), "data CRC");
            records.push(data);
            at += 16 + len;
        }
        records
    }

    #[test]
    fn a_finished_runs_metrics_export_to_the_same_events() {
        let dir = gpicl_testing::scratch_dir("tensorboard-export");
        let log = crate::MetricsLog::open(&dir.join("metrics.jsonl"));
        let train = RunRecord::Train(TrainRecord {
            step: 3,
            loss: 1.5,
            ..Default::default()
        });
        log.append(&train).unwrap();
        let (path, written) =
            export_metrics(&dir.join("metrics.jsonl"), &dir.join("tensorboard")).unwrap();
        assert_eq!(written, 1);
        let events: Vec<Event> = read_records(&path)
            .iter()
            .map(|r| Event::decode(r.as_slice()).unwrap())
            .collect();
        assert_eq!(events.len(), 2, "the version event and the step");
        assert_eq!(events[1].step, 3);
        let Some(What::Summary(summary)) = &events[1].what else {
            panic!("no summary");
        };
        assert!(summary
            .value
            .iter()
            .any(|v| v.tag == "train/loss" && v.value == Some(ValueKind::SimpleValue(1.5))));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_masked_crc_is_tensorflows() {
        // CRC-32C's published check value, then TensorFlow's masking.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(
            masked_crc32c(b"123456789"),
            0xE306_9283u32.rotate_right(15).wrapping_add(0xa282_ead8)
        );
    }

    #[test]
    fn training_and_evaluation_records_become_scalar_events_tensorboard_can_frame() {
        let dir = gpicl_testing::scratch_dir("tensorboard");
        let writer = EventWriter::create(&dir).unwrap();
        writer
            .record(&RunRecord::Train(TrainRecord {
                step: 7,
                loss: 2.25,
                lr: 1e-3,
                ..Default::default()
            }))
            .unwrap();
        writer
            .record(&RunRecord::Eval(EvalRecord {
                step: 250,
                dataset: "mnist".into(),
                group: "unseen".into(),
                acc_first: 0.1,
                acc_last: 0.5,
                loss_last: 1.5,
            }))
            .unwrap();
        let name = writer
            .path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .to_string();
        assert!(name.starts_with("events.out.tfevents."), "{name}");
        let records = read_records(writer.path());
        assert_eq!(records.len(), 3);
        let events: Vec<Event> = records
            .iter()
            .map(|r| Event::decode(r.as_slice()).unwrap())
            .collect();
        // The first event names the file version.
        assert_eq!(
            events[0].what,
            Some(What::FileVersion("brain.Event:2".into()))
        );
        // Then a step with its summary values: tag and simple_value.
        let scalars = |event: &Event| -> (i64, Vec<(String, f32)>) {
            let Some(What::Summary(summary)) = &event.what else {
                panic!("not a summary: {event:?}");
            };
            let values = summary
                .value
                .iter()
                .map(|v| match v.value {
                    Some(ValueKind::SimpleValue(x)) => (v.tag.clone(), x),
                    None => panic!("{} has no simple_value", v.tag),
                })
                .collect();
            (event.step, values)
        };
        let (step, values) = scalars(&events[1]);
        assert_eq!(step, 7);
        assert!(values.contains(&("train/loss".into(), 2.25)));
        assert!(values.contains(&("train/lr".into(), 1e-3)));
        // A zero is written, not left out.
        assert!(values.contains(&("train/acc".into(), 0.0)));
        let (step, values) = scalars(&events[2]);
        assert_eq!(step, 250);
        assert!(values.contains(&("eval/mnist/unseen/acc_last".into(), 0.5)));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn scalars_read_back_as_written_and_a_damaged_file_is_refused() {
        let dir = gpicl_testing::scratch_dir("tensorboard-read");
        let writer = EventWriter::create(&dir).unwrap();
        writer.scalars(3, &[("a", 0.5), ("b", 0.0)]).unwrap();
        writer.scalars(4, &[("a", 0.25)]).unwrap();
        let scalars = read_scalars(writer.path()).unwrap();
        let seen: Vec<(u64, &str, f32)> = scalars
            .iter()
            .map(|s| (s.step, s.tag.as_str(), s.value))
            .collect();
        assert_eq!(seen, [(3, "a", 0.5), (3, "b", 0.0), (4, "a", 0.25)]);
        let mut bytes = std::fs::read(writer.path()).unwrap();
        let last = bytes.len() - 6;
        bytes[last] ^= 0xff;
        std::fs::write(writer.path(), &bytes).unwrap();
        let err = read_scalars(writer.path()).unwrap_err().to_string();
        assert!(err.contains("CRC"), "{err}");
        std::fs::write(writer.path(), &bytes[..10]).unwrap();
        assert!(read_scalars(writer.path()).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
