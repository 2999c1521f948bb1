//! TensorBoard event files: a second sink for a run's metrics beside
//! `metrics.jsonl` (`schedule.tensorboard = true`), readable by
//! TensorBoard, and by Weights & Biases' TensorBoard sync.
//!
//! The format is TensorFlow's record file of `Event` protocol buffers:
//! each record is its length (u64, little-endian), the masked CRC-32C of
//! that length, the bytes, and their masked CRC-32C. The first event names
//! the file version; every other event holds scalar summaries at a step.
//! The few protobuf fields needed are written by hand, so no protobuf
//! dependency is pulled in. A process writes its own file
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
        let mut event = Vec::new();
        put_double(&mut event, 1, wall_time());
        put_bytes(&mut event, 3, b"brain.Event:2");
        writer.append(&[event])?;
        Ok(writer)
    }

    /// The event file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// One event with these scalars (`tag`, value) at `step`.
    pub fn scalars(&self, step: u64, values: &[(&str, f64)]) -> Result<()> {
        let mut summary = Vec::new();
        for (tag, value) in values {
            let mut v = Vec::new();
            put_bytes(&mut v, 1, tag.as_bytes());
            put_float(&mut v, 2, *value as f32);
            put_bytes(&mut summary, 1, &v);
        }
        let mut event = Vec::new();
        put_double(&mut event, 1, wall_time());
        put_varint_field(&mut event, 2, step);
        put_bytes(&mut event, 5, &summary);
        self.append(&[event])
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

    fn append(&self, events: &[Vec<u8>]) -> Result<()> {
        let mut bytes = Vec::new();
        for data in events {
            let len = (data.len() as u64).to_le_bytes();
            bytes.extend_from_slice(&len);
            bytes.extend_from_slice(&masked_crc32c(&len).to_le_bytes());
            bytes.extend_from_slice(data);
            bytes.extend_from_slice(&masked_crc32c(data).to_le_bytes());
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(MetaError::io(&self.path))?;
        f.write_all(&bytes).map_err(MetaError::io(&self.path))
    }
}

fn wall_time() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_varint_field(out: &mut Vec<u8>, field: u64, v: u64) {
    put_varint(out, field << 3);
    put_varint(out, v);
}

fn put_double(out: &mut Vec<u8>, field: u64, v: f64) {
    put_varint(out, (field << 3) | 1);
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_float(out: &mut Vec<u8>, field: u64, v: f32) {
    put_varint(out, (field << 3) | 5);
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    put_varint(out, (field << 3) | 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// CRC-32C (Castagnoli), bitwise: event files are small next to training.
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= byte as u32;
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0x82F6_3B78 & mask);
        }
    }
    !crc
}

/// TensorFlow's masked CRC, so that a CRC of data holding CRCs stays strong.
fn masked_crc32c(data: &[u8]) -> u32 {
    let crc = crc32c(data);
    (crc.rotate_right(15)).wrapping_add(0xa282_ead8)
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

    fn varint(bytes: &[u8], at: &mut usize) -> u64 {
        let (mut v, mut shift) = (0u64, 0);
        loop {
            let b = bytes[*at];
            *at += 1;
            v |= ((b & 0x7f) as u64) << shift;
            if b < 0x80 {
                return v;
            }
            shift += 7;
        }
    }

    /// (field, wire type, payload) of each top-level field of a message.
    fn fields(bytes: &[u8]) -> Vec<(u64, u64, Vec<u8>)> {
        let mut at = 0;
        let mut out = Vec::new();
        while at < bytes.len() {
            let key = varint(bytes, &mut at);
            let (field, wire) = (key >> 3, key & 7);
            let payload = match wire {
                0 => {
                    let start = at;
                    varint(bytes, &mut at);
                    bytes[start..at].to_vec()
                }
                1 => {
                    at += 8;
                    bytes[at - 8..at].to_vec()
                }
                2 => {
                    let len = varint(bytes, &mut at) as usize;
                    at += len;
                    bytes[at - len..at].to_vec()
                }
                5 => {
                    at += 4;
                    bytes[at - 4..at].to_vec()
                }
                other => panic!("wire type {other}"),
            };
            out.push((field, wire, payload));
        }
        out
    }

    #[test]
    fn crc32c_matches_the_published_check_value() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(b""), 0);
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
        // The first event names the file version.
        let first = fields(&records[0]);
        assert!(first
            .iter()
            .any(|(f, w, p)| (*f, *w) == (3, 2) && p == b"brain.Event:2"));
        // Then a step with its summary values: tag and simple_value.
        let scalars = |record: &[u8]| -> (u64, Vec<(String, f32)>) {
            let event = fields(record);
            let step = event
                .iter()
                .find(|(f, _, _)| *f == 2)
                .map(|(_, _, p)| varint(p, &mut 0))
                .unwrap();
            let summary = &event.iter().find(|(f, _, _)| *f == 5).unwrap().2;
            let values = fields(summary)
                .into_iter()
                .map(|(_, _, value)| {
                    let value = fields(&value);
                    let tag = String::from_utf8(value[0].2.clone()).unwrap();
                    assert_eq!((value[1].0, value[1].1), (2, 5), "simple_value is a float");
                    (
                        tag,
                        f32::from_le_bytes(value[1].2.clone().try_into().unwrap()),
                    )
                })
                .collect();
            (step, values)
        };
        let (step, values) = scalars(&records[1]);
        assert_eq!(step, 7);
        assert!(values.contains(&("train/loss".into(), 2.25)));
        assert!(values.contains(&("train/lr".into(), 1e-3)));
        let (step, values) = scalars(&records[2]);
        assert_eq!(step, 250);
        assert!(values.contains(&("eval/mnist/unseen/acc_last".into(), 0.5)));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
