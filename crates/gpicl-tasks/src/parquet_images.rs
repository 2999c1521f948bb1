//! Reading image-classification parquet shards as the Hugging Face
//! `datasets` library writes them: an image column holding a
//! `{bytes, path}` struct (or plain bytes) of PNG/JPEG data, and an integer
//! label column.

use crate::error::{Result, TaskError};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::{Field, Row};
use std::path::Path;

/// The most a column chunk may expand when decoded, relative to the file.
const MAX_EXPANSION: usize = 64;

/// Decoded examples of one shard: `images` is `n × h × w × c` bytes.
#[derive(Debug, Default)]
pub struct DecodedShard {
    /// Row-major pixels, HWC, of every example.
    pub images: Vec<u8>,
    /// One label per example.
    pub labels: Vec<u8>,
}

/// Decodes every row of `path`. Images must decode to `shape` (height,
/// width, channels: 1 for grey, 3 for RGB; other colour types are
/// converted), labels must be below `classes`.
pub fn read_shard(
    path: &Path,
    image_column: &str,
    label_column: &str,
    shape: (usize, usize, usize),
    classes: usize,
) -> Result<DecodedShard> {
    // The parquet crate asserts on some malformed footers (negative column
    // offsets, for one) instead of returning an error: a damaged shard must
    // be an error naming it, not a crash.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        decode_shard(path, image_column, label_column, shape, classes)
    }))
    .unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown failure".into());
        Err(TaskError::Corrupt {
            path: path.to_path_buf(),
            reason: format!("not a readable parquet file (the parquet reader failed: {what})"),
        })
    })
}

fn decode_shard(
    path: &Path,
    image_column: &str,
    label_column: &str,
    shape: (usize, usize, usize),
    classes: usize,
) -> Result<DecodedShard> {
    let corrupt = |reason: String| TaskError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let file = std::fs::File::open(path).map_err(|source| TaskError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let reader = SerializedFileReader::new(file)
        .map_err(|e| corrupt(format!("not a readable parquet file: {e}")))?;
    // The footer's row count is untrusted: reserve no more than the file
    // could hold (each row takes at least a byte).
    let file_len = std::fs::metadata(path).map_or(0, |m| m.len()) as usize;
    // So are its column sizes, which the reader allocates before reading:
    // a chunk cannot be larger than the file, nor expand more than the
    // compressions of image shards do.
    for group in reader.metadata().row_groups() {
        for column in group.columns() {
            let stored = column.compressed_size();
            let expanded = column.uncompressed_size();
            if stored < 0
                || stored as usize > file_len
                || expanded < 0
                || expanded as usize > MAX_EXPANSION * file_len.max(1)
            {
                return Err(corrupt(format!(
                    "column `{}` claims {stored} stored and {expanded} decoded bytes in a {file_len}-byte file",
                    column.column_path()
                )));
            }
        }
    }
    let rows = (reader.metadata().file_metadata().num_rows().max(0) as usize).min(file_len);
    let (h, w, c) = shape;
    let mut out = DecodedShard {
        images: Vec::with_capacity(rows * h * w * c),
        labels: Vec::with_capacity(rows),
    };
    let iter = reader
        .get_row_iter(None)
        .map_err(|e| corrupt(format!("cannot read rows: {e}")))?;
    for (index, row) in iter.enumerate() {
        let row = row.map_err(|e| corrupt(format!("row {index}: {e}")))?;
        let bytes = image_bytes(&row, image_column)
            .map_err(|reason| corrupt(format!("row {index}: {reason}")))?;
        let label = label_value(&row, label_column)
            .map_err(|reason| corrupt(format!("row {index}: {reason}")))?;
        if label < 0 || label as usize >= classes || label > u8::MAX as i64 {
            return Err(corrupt(format!(
                "row {index}: label {label} outside the dataset's {classes} classes"
            )));
        }
        let image = image::load_from_memory(bytes)
            .map_err(|e| corrupt(format!("row {index}: image does not decode: {e}")))?;
        if (image.height() as usize, image.width() as usize) != (h, w) {
            return Err(corrupt(format!(
                "row {index}: image is {}×{}, expected {h}×{w}",
                image.height(),
                image.width()
            )));
        }
        match c {
            1 => out.images.extend_from_slice(image.to_luma8().as_raw()),
            _ => out.images.extend_from_slice(image.to_rgb8().as_raw()),
        }
        out.labels.push(label as u8);
    }
    Ok(out)
}

fn column<'a>(row: &'a Row, name: &str) -> std::result::Result<&'a Field, String> {
    row.get_column_iter()
        .find(|(n, _)| n.as_str() == name)
        .map(|(_, f)| f)
        .ok_or_else(|| {
            let names: Vec<&str> = row.get_column_iter().map(|(n, _)| n.as_str()).collect();
            format!("no column `{name}` (columns: {})", names.join(", "))
        })
}

fn image_bytes<'a>(row: &'a Row, name: &str) -> std::result::Result<&'a [u8], String> {
    match column(row, name)? {
        Field::Bytes(b) => Ok(b.data()),
        Field::Group(inner) => match column(inner, "bytes")? {
            Field::Bytes(b) => Ok(b.data()),
            other => Err(format!("`{name}.bytes` is {other:?}, expected bytes")),
        },
        other => Err(format!(
            "`{name}` is {}, expected image bytes or a {{bytes, path}} struct",
            short(other)
        )),
    }
}

fn label_value(row: &Row, name: &str) -> std::result::Result<i64, String> {
    Ok(match column(row, name)? {
        Field::Byte(v) => *v as i64,
        Field::Short(v) => *v as i64,
        Field::Int(v) => *v as i64,
        Field::Long(v) => *v,
        Field::UByte(v) => *v as i64,
        Field::UShort(v) => *v as i64,
        Field::UInt(v) => *v as i64,
        Field::ULong(v) => i64::try_from(*v).unwrap_or(i64::MAX),
        other => return Err(format!("`{name}` is {}, expected an integer", short(other))),
    })
}

fn short(field: &Field) -> String {
    let text = format!("{field:?}");
    text.chars().take(40).collect()
}
