"""compute_image_mean: the mean image of a Datum database, as Caffe's tool.

    compute_image_mean [--backend=lmdb|leveldb] INPUT_DB [OUTPUT_FILE]

The mean is accumulated in float32, datum by datum, then divided by the count, exactly as Caffe
sums into its BlobProto's float data; the output is a BlobProto with the legacy
num/channels/height/width (1 x C x H x W) and no ``shape``. Encoded datums are decoded with their
native channels. Prints the mean value of each channel."""
from __future__ import annotations

import argparse
import sys

import numpy as np
from tqdm import tqdm

from ..data.datum import datum_pixels, parse_datum
from ..data.db import backend_name, iterate
from ..errors import DataError
from ..model_io import write_blobproto
from ..proto import caffe_pb2
from .cli_util import run_main


def compute_mean(db_path: str, backend: str = "lmdb", progress: bool | None = None) -> np.ndarray:
    """The C x H x W float32 mean of every Datum of a database."""
    total: np.ndarray | None = None
    count = 0
    show = sys.stderr.isatty() if progress is None else progress
    for key, value in tqdm(iterate(db_path, backend_name(backend)), disable=not show, unit="datum",
                           file=sys.stderr):
        pixels = datum_pixels(parse_datum(value, key), key)
        if total is None:
            total = np.zeros(pixels.shape, dtype=np.float32)
        elif pixels.shape != total.shape:
            raise DataError(f"{db_path}: record {key.decode(errors='replace')} has shape "
                            f"{pixels.shape}, the first one {total.shape}")
        total += pixels.astype(np.float32)
        count += 1
        if not show and count % 10000 == 0:
            print(f"Processed {count} files.", file=sys.stderr)
    print(f"Processed {count} files.", file=sys.stderr)
    return total / np.float32(count)


def mean_blobproto(mean: np.ndarray) -> caffe_pb2.BlobProto:
    """A BlobProto with legacy num=1, channels, height, width and the float data."""
    blob = caffe_pb2.BlobProto()
    blob.num = 1
    blob.channels, blob.height, blob.width = (int(d) for d in mean.shape)
    blob.data.extend(mean.astype(np.float32).ravel().tolist())
    return blob


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="compute_image_mean",
        description="Compute the mean image of a set of images given by a leveldb/lmdb "
                    "(Caffe's compute_image_mean).",
        epilog="Example: compute_image_mean --backend=lmdb train_lmdb mean.binaryproto")
    p.add_argument("input_db", metavar="INPUT_DB")
    p.add_argument("output_file", metavar="OUTPUT_FILE", nargs="?", default=None,
                   help="the mean as a .binaryproto (optional: without it only the channel means "
                        "are printed)")
    p.add_argument("--backend", default="lmdb", help="lmdb or leveldb (default lmdb)")
    p.add_argument("--no_progress", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    def _main(args: list[str]) -> int:
        a = build_parser().parse_args(args)
        mean = compute_mean(a.input_db, a.backend, progress=False if a.no_progress else None)
        if a.output_file:
            print(f"Write to {a.output_file}", file=sys.stderr)
            write_blobproto(mean_blobproto(mean), a.output_file)
        print(f"Number of channels: {mean.shape[0]}", file=sys.stderr)
        for c in range(mean.shape[0]):
            # Caffe sums the channel sequentially in float
            value = float(np.cumsum(mean[c].ravel(), dtype=np.float32)[-1] / np.float32(mean[c].size))
            print(f"mean_value channel [{c}]: {value:g}", file=sys.stderr)
        return 0
    return run_main(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
