//! The IDX file format of MNIST, gzipped or raw.
//!
//! Header: two zero bytes, a type byte (`0x08`, unsigned byte), the number
//! of dimensions `D`, then `D` big-endian `u32` sizes, then the payload in
//! row-major order. The rank is read from the header, never guessed from
//! the file name (colour images are rank 4, `N×H×W×C`).

use crate::error::{Result, TaskError};
use std::io::{Read, Write};
use std::path::Path;

/// An n-dimensional array of bytes read from an IDX file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxArray {
    /// Sizes of each dimension, outermost first.
    pub dims: Vec<usize>,
    /// Row-major payload; `data.len() == dims.iter().product()`.
    pub data: Vec<u8>,
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const UNSIGNED_BYTE: u8 = 0x08;

/// Reads an IDX file, decompressing it if it is gzipped.
pub fn read_idx(path: &Path) -> Result<IdxArray> {
    let bytes = std::fs::read(path).map_err(|source| TaskError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let raw = if bytes.starts_with(&GZIP_MAGIC) {
        // Deflate expands at most about 1032-fold.
        let most = (bytes.len() as u64)
            .saturating_mul(1032)
            .saturating_add(1024);
        inflate_bounded(flate2::read::MultiGzDecoder::new(&bytes[..]), most).map_err(|reason| {
            TaskError::Corrupt {
                path: path.to_path_buf(),
                reason,
            }
        })?
    } else {
        bytes
    };
    parse_idx(&raw).map_err(|reason| TaskError::Corrupt {
        path: path.to_path_buf(),
        reason,
    })
}

/// Inflates an IDX stream no further than its header says it holds (plus
/// one byte, to notice trailing bytes) and never past `most` bytes: a
/// small file whose stream inflates without end is refused early.
pub fn inflate_bounded(mut stream: impl Read, most: u64) -> std::result::Result<Vec<u8>, String> {
    let damaged = |e: std::io::Error| format!("gzip stream is damaged or truncated: {e}");
    let mut out = Vec::new();
    stream
        .by_ref()
        .take(4)
        .read_to_end(&mut out)
        .map_err(damaged)?;
    if out.len() < 4 {
        return Ok(out);
    }
    let rank = out[3] as u64;
    stream
        .by_ref()
        .take(4 * rank)
        .read_to_end(&mut out)
        .map_err(damaged)?;
    if (out.len() as u64) < 4 + 4 * rank {
        return Ok(out);
    }
    let payload = out[4..]
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes(c.try_into().expect("4 bytes")) as u64)
        .try_fold(1u64, |acc, d| acc.checked_mul(d));
    let Some(payload) = payload else {
        return Err("dimensions overflow".into());
    };
    if payload > most {
        return Err(format!(
            "header claims {payload} payload bytes, more than this gzip file can hold ({most} at most)"
        ));
    }
    stream
        .by_ref()
        .take(payload + 1)
        .read_to_end(&mut out)
        .map_err(damaged)?;
    Ok(out)
}

/// Parses the bytes of an uncompressed IDX file.
pub fn parse_idx(raw: &[u8]) -> std::result::Result<IdxArray, String> {
    if raw.len() < 4 {
        return Err(format!(
            "file is {} bytes, too short for an IDX header",
            raw.len()
        ));
    }
    if raw[0] != 0 || raw[1] != 0 {
        return Err(format!(
            "wrong magic number {:02x}{:02x}{:02x}{:02x}: an IDX file starts with two zero bytes",
            raw[0], raw[1], raw[2], raw[3]
        ));
    }
    if raw[2] != UNSIGNED_BYTE {
        return Err(format!(
            "element type 0x{:02x} is not supported (expected 0x08, unsigned byte)",
            raw[2]
        ));
    }
    let rank = raw[3] as usize;
    if rank == 0 {
        return Err("rank 0 in header: expected at least one dimension".into());
    }
    let header = 4 + 4 * rank;
    if raw.len() < header {
        return Err(format!(
            "header declares {rank} dimensions but the file ends after {} bytes",
            raw.len()
        ));
    }
    let dims: Vec<usize> = (0..rank)
        .map(|i| {
            u32::from_be_bytes(raw[4 + 4 * i..8 + 4 * i].try_into().expect("4 bytes")) as usize
        })
        .collect();
    let expected = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| format!("dimensions {dims:?} overflow"))?;
    let payload = &raw[header..];
    if payload.len() != expected {
        let what = if payload.len() < expected {
            "truncated"
        } else {
            "has trailing bytes"
        };
        return Err(format!(
            "{what}: dimensions {dims:?} need {expected} payload bytes, found {}",
            payload.len()
        ));
    }
    Ok(IdxArray {
        dims,
        data: payload.to_vec(),
    })
}

/// Serialises an array as an uncompressed IDX byte stream.
pub fn encode_idx(array: &IdxArray) -> Vec<u8> {
    let mut out = vec![0, 0, UNSIGNED_BYTE, array.dims.len() as u8];
    for &d in &array.dims {
        out.extend_from_slice(&(d as u32).to_be_bytes());
    }
    out.extend_from_slice(&array.data);
    out
}

/// Writes an IDX file, gzipped when `path` ends in `.gz`. The file is
/// written beside its destination and renamed, so a crash never leaves a
/// half-written file under the final name.
pub fn write_idx(path: &Path, array: &IdxArray) -> Result<()> {
    let io_err = |source| TaskError::Io {
        path: path.to_path_buf(),
        source,
    };
    let raw = encode_idx(array);
    let bytes = if path.extension().is_some_and(|e| e == "gz") {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(&raw).map_err(io_err)?;
        enc.finish().map_err(io_err)?
    } else {
        raw
    };
    let tmp = path.with_extension("partial");
    std::fs::write(&tmp, bytes).map_err(io_err)?;
    std::fs::rename(&tmp, path).map_err(io_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> IdxArray {
        IdxArray {
            dims: vec![2, 3, 2],
            data: (0..12).collect(),
        }
    }

    #[test]
    fn an_endless_stream_is_inflated_only_as_far_as_its_header_says() {
        // 4 images of 2×2, then zeros without end: reading it whole would
        // never finish.
        let header = [0u8, 0, 8, 3, 0, 0, 0, 4, 0, 0, 0, 2, 0, 0, 0, 2];
        let endless = std::io::Read::chain(&header[..], std::io::repeat(0));
        let raw = inflate_bounded(endless, u64::MAX).unwrap();
        assert_eq!(raw.len(), 16 + 16 + 1);
        let err = parse_idx(&raw).unwrap_err();
        assert!(err.contains("trailing bytes"), "{err}");
        let claims_much = [0u8, 0, 8, 1, 0x7f, 0xff, 0xff, 0xff];
        let err = inflate_bounded(&claims_much[..], 1000).unwrap_err();
        assert!(err.contains("more than this gzip file can hold"), "{err}");
    }

    #[test]
    fn raw_and_gzipped_files_round_trip() {
        let dir = gpicl_testing::scratch_dir("idx");
        for name in ["a-idx3-ubyte", "a-idx3-ubyte.gz"] {
            let p = dir.join(name);
            write_idx(&p, &sample()).unwrap();
            assert_eq!(read_idx(&p).unwrap(), sample());
        }
        let labels = IdxArray {
            dims: vec![4],
            data: vec![1, 2, 3, 4],
        };
        let colour = IdxArray {
            dims: vec![1, 2, 2, 3],
            data: (0..12).collect(),
        };
        for a in [labels, colour] {
            let p = dir.join("x.gz");
            write_idx(&p, &a).unwrap();
            assert_eq!(read_idx(&p).unwrap(), a);
        }
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn truncated_payload_is_refused() {
        let mut bytes = encode_idx(&sample());
        bytes.pop();
        assert!(parse_idx(&bytes).unwrap_err().contains("truncated"));
    }

    #[test]
    fn wrong_magic_is_refused() {
        let mut bytes = encode_idx(&sample());
        bytes[0] = 7;
        assert!(parse_idx(&bytes).unwrap_err().contains("magic"));
    }

    #[test]
    fn unsupported_element_type_is_refused() {
        let mut bytes = encode_idx(&sample());
        bytes[2] = 0x0d;
        assert!(parse_idx(&bytes).unwrap_err().contains("element type"));
    }

    #[test]
    fn truncated_header_is_refused() {
        assert!(parse_idx(&[0, 0, 8, 3, 0, 0])
            .unwrap_err()
            .contains("header"));
    }

    #[test]
    fn errors_name_the_file() {
        let dir = gpicl_testing::scratch_dir("idx-bad");
        let p = dir.join("broken.gz");
        let mut gz = Vec::new();
        {
            let mut enc = flate2::write::GzEncoder::new(&mut gz, flate2::Compression::fast());
            enc.write_all(&encode_idx(&sample())).unwrap();
            enc.finish().unwrap();
        }
        gz.truncate(gz.len() / 2);
        std::fs::write(&p, gz).unwrap();
        let err = read_idx(&p).unwrap_err().to_string();
        assert!(err.contains("broken.gz"), "{err}");
        std::fs::remove_dir_all(dir).ok();
    }
}
