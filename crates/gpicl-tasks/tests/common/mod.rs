//! Test data shared by the integration tests: small PNG images and parquet
//! shards laid out as the Hugging Face `datasets` library writes them.
#![allow(dead_code)]

use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use std::sync::Arc;

/// Example `i`: 30 pixels (a 6×5 grey image) and its label `i mod 10`.
pub fn example(i: usize) -> (Vec<u8>, u8) {
    let pixels = (0..30).map(|p| ((i * 7 + p) % 256) as u8).collect();
    (pixels, (i % 10) as u8)
}

pub fn png(pixels: &[u8]) -> Vec<u8> {
    let img = image::GrayImage::from_raw(5, 6, pixels.to_vec()).unwrap();
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// A parquet shard laid out as the `datasets` library writes image data:
/// `image: {bytes, path}` and `label: int64`, snappy-compressed.
pub fn shard(examples: std::ops::Range<usize>) -> Vec<u8> {
    let images: Vec<Vec<u8>> = examples.clone().map(|i| png(&example(i).0)).collect();
    let labels: Vec<i64> = examples.map(|i| example(i).1 as i64).collect();
    shard_with(&images, &labels)
}

/// A shard of already encoded images, labelled 0, 1, 2, …
pub fn shard_of_images(images: &[Vec<u8>]) -> Vec<u8> {
    let labels: Vec<i64> = (0..images.len() as i64).map(|i| i % 10).collect();
    shard_with(images, &labels)
}

fn shard_with(encoded: &[Vec<u8>], labels: &[i64]) -> Vec<u8> {
    let schema = Arc::new(
        parse_message_type(
            "message schema {
                optional group image {
                    optional binary bytes;
                    optional binary path (STRING);
                }
                optional int64 label;
            }",
        )
        .unwrap(),
    );
    let props = Arc::new(
        WriterProperties::builder()
            .set_compression(parquet::basic::Compression::SNAPPY)
            .build(),
    );
    let mut buf = Vec::new();
    {
        let mut writer = SerializedFileWriter::new(&mut buf, schema, props).unwrap();
        let mut group = writer.next_row_group().unwrap();
        let n = encoded.len();
        let images: Vec<ByteArray> = encoded.iter().map(|b| ByteArray::from(b.clone())).collect();
        let mut column = group.next_column().unwrap().unwrap();
        column
            .typed::<ByteArrayType>()
            .write_batch(&images, Some(&vec![2; n]), None)
            .unwrap();
        column.close().unwrap();
        // `path` is null in every row.
        let mut column = group.next_column().unwrap().unwrap();
        column
            .typed::<ByteArrayType>()
            .write_batch(&[], Some(&vec![1; n]), None)
            .unwrap();
        column.close().unwrap();
        let mut column = group.next_column().unwrap().unwrap();
        column
            .typed::<Int64Type>()
            .write_batch(labels, Some(&vec![1; n]), None)
            .unwrap();
        column.close().unwrap();
        group.close().unwrap();
        writer.close().unwrap();
    }
    buf
}
