//! Property tests for every reader of outside bytes in this crate: IDX
//! files (raw and gzipped), parquet shards and the PNG images inside them,
//! CSV tables and image folders of your own.
//! Thousands of mutations of valid files (flipped, overwritten, inserted
//! and extreme bytes, truncations): none may panic, and none may allocate
//! more than the file could hold (its size, or what its gzip stream can
//! expand to).

mod common;
use gpicl_tasks::idx::{encode_idx, parse_idx, read_idx, IdxArray};
use gpicl_tasks::parquet_images::read_shard;
use gpicl_testing::fuzzing::{config, largest_allocation, mutate, mutations, PeakAlloc};
use proptest::prelude::*;
use std::io::Write;
use std::path::PathBuf;

#[global_allocator]
static ALLOC: PeakAlloc = PeakAlloc;

/// Beyond the input's own size: buffers, tables and decoder state.
const OVERHEAD: usize = 4 << 20;
/// Deflate expands at most about 1032:1.
const GZIP_EXPANSION: usize = 1100;

/// A file in this binary's one scratch folder (thousands of cases share it).
fn scratch(name: &str) -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| gpicl_testing::scratch_dir("fuzz-tasks"))
        .join(name)
}

fn valid_idx() -> Vec<u8> {
    encode_idx(&IdxArray {
        dims: vec![3, 4, 5],
        data: (0..60).map(|i| i as u8).collect(),
    })
}

fn gzipped(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

#[test]
fn the_allocation_probe_sees_large_requests() {
    let (v, peak) = largest_allocation(|| vec![1u8; 3 << 20]);
    assert!(peak >= 3 << 20 && v.len() == 3 << 20, "{peak}");
}

proptest! {
    #![proptest_config(config(2_000))]

    #[test]
    fn mutated_raw_idx_files_are_parsed_or_refused_within_their_size(edits in mutations(6)) {
        let bytes = mutate(&valid_idx(), &edits);
        let (result, peak) = largest_allocation(|| parse_idx(&bytes));
        prop_assert!(peak <= 2 * bytes.len() + OVERHEAD, "{peak} bytes for a {}-byte file", bytes.len());
        if let Ok(array) = result {
            prop_assert_eq!(array.data.len(), array.dims.iter().product::<usize>());
        }
    }
}

proptest! {
    #![proptest_config(config(1_000))]

    #[test]
    fn mutated_gzipped_idx_files_are_read_or_refused_naming_the_file(edits in mutations(4)) {
        let bytes = mutate(&gzipped(&valid_idx()), &edits);
        let path = scratch("mutated-images-idx3-ubyte.gz");
        std::fs::write(&path, &bytes).unwrap();
        let (result, peak) = largest_allocation(|| read_idx(&path));
        prop_assert!(peak <= GZIP_EXPANSION * bytes.len() + OVERHEAD, "{peak} bytes for {}", bytes.len());
        if let Err(e) = result {
            prop_assert!(e.to_string().contains("mutated-images-idx3-ubyte.gz"), "{}", e);
        }
    }
}

proptest! {
    #![proptest_config(config(500))]

    #[test]
    fn mutated_parquet_shards_are_decoded_or_refused_naming_the_file(edits in mutations(4)) {
        let bytes = mutate(&common::shard(0..6), &edits);
        let path = scratch("mutated.parquet");
        std::fs::write(&path, &bytes).unwrap();
        let (result, peak) =
            largest_allocation(|| read_shard(&path, "image", "label", (6, 5, 1), 10));
        // Snappy and PNG expand too: bound by the images the shard can hold.
        prop_assert!(peak <= 64 * bytes.len() + OVERHEAD, "{peak} bytes for {}", bytes.len());
        match result {
            Ok(shard) => prop_assert_eq!(shard.images.len(), shard.labels.len() * 30),
            Err(e) => prop_assert!(e.to_string().contains("mutated.parquet"), "{}", e),
        }
    }

    #[test]
    fn mutated_png_images_in_a_shard_are_decoded_or_refused(edits in mutations(4)) {
        let png = mutate(&common::png(&common::example(3).0), &edits);
        let bytes = common::shard_of_images(&[png]);
        let path = scratch("mutated-png.parquet");
        std::fs::write(&path, &bytes).unwrap();
        let (result, peak) =
            largest_allocation(|| read_shard(&path, "image", "label", (6, 5, 1), 10));
        prop_assert!(peak <= 64 * bytes.len() + OVERHEAD, "{peak} bytes for {}", bytes.len());
        if let Err(e) = result {
            prop_assert!(e.to_string().contains("row 0"), "{}", e);
        }
    }
}

fn valid_csv() -> Vec<u8> {
    b"sepal,\"petal, long\",label\n5.1,3.5,setosa\n4.9,-3e-1,\"vir,ginica\"\n6.0,2.2,setosa\n"
        .to_vec()
}

proptest! {
    #![proptest_config(config(1_000))]

    #[test]
    fn mutated_csv_tables_are_read_or_refused_naming_the_file(edits in mutations(6)) {
        let bytes = mutate(&valid_csv(), &edits);
        let path = scratch("mutated-table.csv");
        std::fs::write(&path, &bytes).unwrap();
        for labelled in [true, false] {
            let (result, peak) = largest_allocation(|| {
                if labelled {
                    gpicl_tasks::table::read_table(&path, "label")
                } else {
                    gpicl_tasks::table::read_query_table(&path, "label")
                }
            });
            prop_assert!(peak <= 8 * bytes.len() + OVERHEAD, "{peak} bytes for {}", bytes.len());
            match result {
                Ok(table) => {
                    prop_assert_eq!(table.x.len(), table.rows() * table.features.len());
                    prop_assert!(table.x.iter().all(|v| v.is_finite()));
                    if table.is_labelled() {
                        prop_assert_eq!(table.labels.len(), table.rows());
                    }
                }
                Err(e) => prop_assert!(e.to_string().contains("mutated-table.csv"), "{}", e),
            }
        }
    }

    #[test]
    fn mutated_images_in_an_image_folder_are_decoded_or_refused_naming_the_file(edits in mutations(4)) {
        let root = scratch("folder");
        let _ = std::fs::remove_dir_all(&root);
        for class in ["a", "b"] {
            std::fs::create_dir_all(root.join(class)).unwrap();
            std::fs::write(root.join(class).join("ok.png"), common::png(&common::example(3).0)).unwrap();
        }
        let png = mutate(&common::png(&common::example(4).0), &edits);
        std::fs::write(root.join("b").join("mutated.png"), &png).unwrap();
        let (result, peak) = largest_allocation(|| {
            gpicl_tasks::image_folder::read_image_folder(&root, None, gpicl_tasks::ChannelPolicy::Gray)
        });
        prop_assert!(peak <= 64 * png.len() + OVERHEAD, "{peak} bytes for {}", png.len());
        match result {
            Ok(folder) => {
                let (h, w, c) = folder.shape;
                prop_assert_eq!(folder.splits[0].pixels.len(), 3 * h * w * c);
            }
            Err(e) => prop_assert!(e.to_string().contains("mutated.png"), "{}", e),
        }
    }
}
