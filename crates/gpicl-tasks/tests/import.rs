//! `data import`: each original format, on small generated files.

use gpicl_tasks::cache::verify_dataset;
use gpicl_tasks::catalog::lookup;
use gpicl_tasks::idx::{read_idx, write_idx, IdxArray};
use gpicl_tasks::import::import_dir;
use gpicl_testing::scratch_dir;
use std::path::Path;

fn images(n: usize, h: usize, w: usize) -> IdxArray {
    IdxArray {
        dims: vec![n, h, w],
        data: (0..n * h * w).map(|i| (i * 13 % 256) as u8).collect(),
    }
}

fn labels(values: Vec<u8>) -> IdxArray {
    IdxArray {
        dims: vec![values.len()],
        data: values,
    }
}

fn write(dir: &Path, file: &str, array: &IdxArray) {
    write_idx(&dir.join(file), array).unwrap();
}

#[test]
fn mnist_style_idx_files_raw_or_gzipped_are_imported_and_verified() {
    let (src, cache) = (scratch_dir("mnist-src"), scratch_dir("mnist-cache"));
    let train = images(12, 28, 28);
    write(&src, "train-images-idx3-ubyte.gz", &train);
    write(
        &src,
        "train-labels-idx1-ubyte.gz",
        &labels((0..12).map(|i| i % 10).collect()),
    );
    // Test files with the other common spelling, uncompressed.
    write(&src, "test-images.idx3-ubyte", &images(5, 28, 28));
    write(&src, "test-labels.idx1-ubyte", &labels(vec![9, 8, 7, 6, 5]));

    let dir = import_dir(lookup("kmnist").unwrap(), &src, &cache).unwrap();
    assert_eq!(dir, cache.join("kmnist"));
    let manifest = verify_dataset(&dir).unwrap();
    assert_eq!(manifest.examples["train"], 12);
    assert_eq!(manifest.examples["t10k"], 5);
    assert_eq!(
        read_idx(&dir.join("train-images-idx3-ubyte.gz")).unwrap(),
        train
    );
    assert_eq!(
        read_idx(&dir.join("t10k-labels-idx1-ubyte.gz"))
            .unwrap()
            .data,
        vec![9, 8, 7, 6, 5]
    );
}

#[test]
fn emnist_images_are_transposed_and_labels_shifted_to_start_at_zero() {
    let (src, cache) = (scratch_dir("emnist-src"), scratch_dir("emnist-cache"));
    let stored = images(3, 28, 28);
    write(&src, "emnist-letters-test-images-idx3-ubyte.gz", &stored);
    write(
        &src,
        "emnist-letters-test-labels-idx1-ubyte.gz",
        &labels(vec![1, 26, 5]),
    );
    // Another variant in the same folder is ignored.
    write(
        &src,
        "emnist-balanced-test-images-idx3-ubyte.gz",
        &images(2, 28, 28),
    );
    write(
        &src,
        "emnist-balanced-test-labels-idx1-ubyte.gz",
        &labels(vec![0, 1]),
    );

    let dir = import_dir(lookup("emnist_letters").unwrap(), &src, &cache).unwrap();
    let imported = read_idx(&dir.join("t10k-images-idx3-ubyte.gz")).unwrap();
    for n in 0..3 {
        for i in 0..28 {
            for j in 0..28 {
                assert_eq!(
                    imported.data[n * 784 + i * 28 + j],
                    stored.data[n * 784 + j * 28 + i]
                );
            }
        }
    }
    let l = read_idx(&dir.join("t10k-labels-idx1-ubyte.gz")).unwrap();
    assert_eq!(l.data, vec![0, 25, 4]);
}

#[test]
fn cifar_binary_batches_become_hwc_colour_images_with_class_names() {
    let (src, cache) = (scratch_dir("cifar-src"), scratch_dir("cifar-cache"));
    let bin = src.join("cifar-10-batches-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let record = |label: u8, seed: u8| {
        let mut r = vec![label];
        r.extend((0..3072).map(|i| (i as u8).wrapping_mul(seed)));
        r
    };
    std::fs::write(
        bin.join("data_batch_1.bin"),
        [record(3, 1), record(7, 2)].concat(),
    )
    .unwrap();
    std::fs::write(bin.join("data_batch_2.bin"), record(0, 3)).unwrap();
    std::fs::write(bin.join("test_batch.bin"), record(9, 5)).unwrap();
    let names = "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n";
    std::fs::write(bin.join("batches.meta.txt"), names).unwrap();

    let dir = import_dir(lookup("cifar10").unwrap(), &src, &cache).unwrap();
    let train = read_idx(&dir.join("train-images-idx3-ubyte.gz")).unwrap();
    assert_eq!(train.dims, vec![3, 32, 32, 3]);
    let original = record(7, 2);
    // Pixel (row 1, col 2), green channel, of the second image.
    let px = 32 + 2;
    assert_eq!(train.data[3072 + px * 3 + 1], original[1 + 1024 + px]);
    assert_eq!(
        read_idx(&dir.join("train-labels-idx1-ubyte.gz"))
            .unwrap()
            .data,
        vec![3, 7, 0]
    );
    let classes = std::fs::read_to_string(dir.join("classes.txt")).unwrap();
    assert!(classes.starts_with("0\tairplane\n1\tautomobile\n"));
    verify_dataset(&dir).unwrap();
}

#[test]
fn files_of_the_wrong_shape_are_refused_with_the_expected_shape() {
    let (src, cache) = (scratch_dir("shape-src"), scratch_dir("shape-cache"));
    write(&src, "t10k-images-idx3-ubyte.gz", &images(2, 32, 32));
    write(&src, "t10k-labels-idx1-ubyte.gz", &labels(vec![1, 2]));
    let err = import_dir(lookup("mnist").unwrap(), &src, &cache).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("t10k-images-idx3-ubyte.gz") && text.contains("28×28×1"),
        "{text}"
    );
    assert_eq!(
        std::fs::read_dir(&cache).unwrap().count(),
        0,
        "nothing cached"
    );
}

#[test]
fn labels_outside_the_classes_and_missing_files_are_refused() {
    let (src, cache) = (scratch_dir("labels-src"), scratch_dir("labels-cache"));
    write(&src, "t10k-images-idx3-ubyte.gz", &images(2, 28, 28));
    write(&src, "t10k-labels-idx1-ubyte.gz", &labels(vec![1, 12]));
    let err = import_dir(lookup("mnist").unwrap(), &src, &cache).unwrap_err();
    assert!(err.to_string().contains("label 12"), "{err}");

    let lone = scratch_dir("lone-src");
    write(&lone, "train-images-idx3-ubyte.gz", &images(2, 28, 28));
    let err = import_dir(lookup("mnist").unwrap(), &lone, &cache).unwrap_err();
    assert!(err.to_string().contains("no matching labels"), "{err}");

    let empty = scratch_dir("empty-src");
    let err = import_dir(lookup("cifar10").unwrap(), &empty, &cache).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("data_batch_1.bin") && text.contains("train-images-idx3-ubyte"),
        "{text}"
    );
}
