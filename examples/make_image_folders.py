#!/usr/bin/env python3
"""Writes an image folder (train/<class>/*.png, test/<class>/*.png) from a
dataset in gzipped IDX files, the layout `cargo xtask predict` and
`cargo xtask data import` read. Python standard library only.

    python3 examples/make_image_folders.py ../shared/data/omniglot /tmp/omniglot-5way \
        --classes 5 --train-per-class 15 --test-per-class 5 --from-split train
    python3 examples/make_image_folders.py ../shared/data/cifar10 /tmp/cifar10-5way --classes 5

Classes are the first `--classes` label values present; images are taken in
file order. With `--from-split train` both folders come from the train
split (the first images of each class train, the next ones test).
"""
import argparse
import gzip
import os
import struct
import zlib


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    if data[0] != 0 or data[1] != 0 or data[2] != 8:
        raise SystemExit(f"{path}: not an unsigned-byte IDX file")
    rank = data[3]
    dims = struct.unpack(">" + "I" * rank, data[4 : 4 + 4 * rank])
    return dims, data[4 + 4 * rank :]


def write_png(path, width, height, channels, pixels):
    kind = {1: 0, 3: 2}[channels]
    stride = width * channels
    raw = b"".join(b"\x00" + pixels[y * stride : (y + 1) * stride] for y in range(height))

    def chunk(tag, body):
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, kind, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def load(folder, split):
    prefix = {"train": "train", "test": "t10k"}[split]
    dims, pixels = read_idx(os.path.join(folder, f"{prefix}-images-idx3-ubyte.gz"))
    _, labels = read_idx(os.path.join(folder, f"{prefix}-labels-idx1-ubyte.gz"))
    n, h, w = dims[:3]
    c = dims[3] if len(dims) == 4 else 1
    size = h * w * c
    return [(labels[i], pixels[i * size : (i + 1) * size]) for i in range(n)], (h, w, c)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dataset", help="folder with {train,t10k}-{images-idx3,labels-idx1}-ubyte.gz")
    ap.add_argument("out")
    ap.add_argument("--classes", type=int, default=5)
    ap.add_argument("--train-per-class", type=int, default=20)
    ap.add_argument("--test-per-class", type=int, default=20)
    ap.add_argument("--from-split", choices=["both", "train"], default="both")
    args = ap.parse_args()
    train, shape = load(args.dataset, "train")
    test = train if args.from_split == "train" else load(args.dataset, "test")[0]
    classes = sorted({label for label, _ in train})[: args.classes]
    h, w, c = shape
    for split, rows, skip, take in [
        ("train", train, 0, args.train_per_class),
        ("test", test, args.train_per_class if args.from_split == "train" else 0, args.test_per_class),
    ]:
        for label in classes:
            images = [p for l, p in rows if l == label][skip : skip + take]
            if len(images) < take:
                raise SystemExit(f"class {label} has only {len(images) + skip} {split} images")
            folder = os.path.join(args.out, split, f"class_{label:03d}")
            os.makedirs(folder, exist_ok=True)
            for i, pixels in enumerate(images):
                write_png(os.path.join(folder, f"{i:04d}.png"), w, h, c, pixels)
    print(f"wrote {args.out}: {len(classes)} classes, {args.train_per_class} train and {args.test_per_class} test images each, {h}x{w}x{c}")


if __name__ == "__main__":
    main()
