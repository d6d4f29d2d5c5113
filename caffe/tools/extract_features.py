"""extract_features: run a net in TEST phase and store blobs, one Datum per image, as Caffe's tool.

    extract_features [--overwrite] pretrained_net_param feature_extraction_proto_file \\
        extract_feature_blob_name1[,name2,...] save_feature_dataset_name1[,name2,...] \\
        num_mini_batches db_type [CPU/GPU] [DEVICE_ID=0]

For each of ``num_mini_batches`` forward passes and each blob, every item n of the batch becomes a
Datum with the blob's legacy channels/height/width (1 for missing axes: a 7-way ``prob`` is
7 x 1 x 1, a label 1 x 1 x 1) and its values in ``float_data``, stored under the key ``%010d``
(the running image index). ``db_type`` is leveldb or lmdb. Paths inside the prototxt (data
sources, mean files) are relative to the working directory, as in Caffe. An existing database is
not overwritten unless ``--overwrite`` is given."""
from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

import torch
from tqdm import tqdm

from .. import mode
from ..data.datum import float_datum_bytes
from ..data.db import Writer, backend_name
from ..errors import CaffeError, DataError
from ..layers.base import TEST
from ..net import Net
from .cli_util import run_main

_COMMIT_EVERY = 1000


def legacy_shape(shape: Sequence[int], blob: str) -> tuple[int, int, int, int]:
    """Caffe's num/channels/height/width of a blob of up to 4 axes (1 for missing axes)."""
    if len(shape) > 4:
        raise DataError(f"blob '{blob}' has {len(shape)} axes; a Datum holds at most 4 (N x C x H x W)")
    full = tuple(int(d) for d in shape) + (1,) * (4 - len(shape))
    return full  # type: ignore[return-value]


def extract(weights: str, proto: str, blob_names: Sequence[str], db_names: Sequence[str],
            num_batches: int, backend: str, *, overwrite: bool = False,
            progress: bool | None = None) -> list[int]:
    """Write the feature databases; returns the number of images stored per blob."""
    if len(blob_names) != len(db_names):
        raise DataError(f"the number of blob names ({len(blob_names)}) and dataset names "
                        f"({len(db_names)}) must be equal")
    if num_batches <= 0:
        raise DataError(f"num_mini_batches must be positive, got {num_batches}")
    backend = backend_name(backend)
    for db in db_names:
        if os.path.exists(db) and not overwrite:
            raise DataError(f"{db} already exists; pass --overwrite to replace it")
    net = Net(proto, TEST, weights=weights)
    for name in blob_names:
        if name not in net.blobs:
            raise DataError(f"Unknown feature blob name {name} in the network {proto}")
    writers: list[Writer] = []
    counts = [0] * len(blob_names)
    show = sys.stderr.isatty() if progress is None else progress
    try:
        for db in db_names:
            writers.append(Writer(db, backend, overwrite=overwrite))
        with torch.no_grad():
            for _ in tqdm(range(num_batches), disable=not show, unit="batch", file=sys.stderr):
                net.forward()
                for i, name in enumerate(blob_names):
                    counts[i] = _store(net.blobs[name].data, name, writers[i], counts[i])
    except BaseException:
        for w in writers:
            w.abort()
        raise
    finally:
        _close_data_layers(net)
    for name, w, n in zip(blob_names, writers, counts):
        w.close()
        print(f"Extracted features of {n} query images for feature blob {name}", file=sys.stderr)
    return counts


def _store(data, name: str, writer: Writer, index: int) -> int:
    num, channels, height, width = legacy_shape(data.shape, name)
    rows = data.reshape(num, -1)
    for n in range(num):
        writer.put(f"{index:010d}", float_datum_bytes(rows[n], channels, height, width))
        index += 1
        if index % _COMMIT_EVERY == 0:
            writer.commit()
    return index


def _close_data_layers(net: Net) -> None:
    for layer in net.modules:
        close = getattr(layer, "close", None)
        if callable(close):
            close()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="extract_features",
        description="Extract blobs of a trained net into LevelDB/LMDB databases of Datum "
                    "(Caffe's extract_features).",
        epilog="Example: extract_features model.caffemodel test.prototxt prob features_prob 100 "
               "leveldb GPU 0")
    p.add_argument("weights", metavar="pretrained_net_param", help=".caffemodel")
    p.add_argument("proto", metavar="feature_extraction_proto_file", help="net .prototxt")
    p.add_argument("blobs", metavar="extract_feature_blob_name1[,name2,...]")
    p.add_argument("dbs", metavar="save_feature_dataset_name1[,name2,...]")
    p.add_argument("num_batches", metavar="num_mini_batches", type=int)
    p.add_argument("backend", metavar="db_type", help="leveldb or lmdb")
    p.add_argument("device", metavar="CPU/GPU", nargs="?", default="CPU")
    p.add_argument("device_id", metavar="DEVICE_ID", nargs="?", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace existing databases")
    p.add_argument("--no_progress", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    def _main(args: list[str]) -> int:
        a = build_parser().parse_args(args)
        if a.device.upper() == "GPU":
            print(f"Using Device_id={a.device_id}", file=sys.stderr)
            try:
                mode.set_mode_gpu()
            except RuntimeError as exc:
                raise CaffeError(str(exc)) from None
            mode.set_device(a.device_id)
        else:
            print("Using CPU", file=sys.stderr)
            mode.set_mode_cpu()
        extract(a.weights, a.proto, a.blobs.split(","), a.dbs.split(","), a.num_batches,
                a.backend, overwrite=a.overwrite, progress=False if a.no_progress else None)
        return 0
    return run_main(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
