"""extract_features: run a net in TEST phase and store blobs, one Datum per image, as Caffe's tool.

    extract_features [--overwrite] pretrained_net_param feature_extraction_proto_file \\
        extract_feature_blob_name1[,name2,...] save_feature_dataset_name1[,name2,...] \\
        num_mini_batches db_type [CPU/GPU] [DEVICE_ID=0]

For each of ``num_mini_batches`` forward passes and each blob, every item n of the batch becomes a
Datum with the blob's legacy channels/height/width (1 for missing axes: a 7-way ``prob`` is
7 x 1 x 1, a label 1 x 1 x 1) and its values in ``float_data``, stored under the key ``%010d``
(the running image index). ``db_type`` is leveldb or lmdb. Paths inside the prototxt (data
sources, mean files) are relative to the working directory, as in Caffe. An existing database is
not overwritten unless ``--overwrite`` is given.

``--shard K/N`` (or torchrun's / srun's rank and world size; ``caffe.launch``) runs the mini-batches
K, K+N, K+2N, ... of the num_mini_batches (the data layers read exactly the items those batches
hold in an unsharded run, with the net's random draws seeded alike in every share) and writes each
database into the folder of its name as ``shard-K-of-N``, with the keys of the unsharded run. The
N parts merge by reading the folder: ``leveldb2mat`` and ``sse.fusion.featdb`` read a folder of
parts as the one database an unsharded run writes. Under a launcher, ``GPU`` without a DEVICE_ID
takes the GPU of the rank's local rank.

Memory does not grow with the input: the data layers read their database (or image list) item by
item through a cursor, the net holds one mini-batch of blobs, the prefetcher a few batches ahead
(``data_param.prefetch``, 4 by default), and each output database up to 1,000 serialized records
before they are committed (Caffe's rhythm; a record is the blob's values of one image as float32
plus a few bytes). A database of a million images goes through in the memory of one batch."""
from __future__ import annotations

import argparse
import os
import sys
import warnings
from typing import Sequence

import torch
from tqdm import tqdm

from .. import mode
from ..data.datum import float_datum_bytes
from ..data.db import Writer, backend_name
from ..errors import CaffeError, DataError
from ..launch import Shard, add_shard_argument, launch_environment, resolve_shard, shard_part
from ..layers.base import TEST
from ..net import Net
from .cli_util import run_main

_COMMIT_EVERY = 1000
SHARD_SEED = 0  # the random seed every share of a sharded run uses, so that they draw alike


def legacy_shape(shape: Sequence[int], blob: str) -> tuple[int, int, int, int]:
    """Caffe's num/channels/height/width of a blob of up to 4 axes (1 for missing axes)."""
    if len(shape) > 4:
        raise DataError(f"blob '{blob}' has {len(shape)} axes; a Datum holds at most 4 (N x C x H x W)")
    full = tuple(int(d) for d in shape) + (1,) * (4 - len(shape))
    return full  # type: ignore[return-value]


def extract(weights: str, proto: str, blob_names: Sequence[str], db_names: Sequence[str],
            num_batches: int, backend: str, *, overwrite: bool = False,
            progress: bool | None = None, shard: Shard = Shard()) -> list[int]:
    """Write the feature databases (share ``shard`` of the mini-batches into
    ``db/shard-K-of-N`` when it is one of several); returns the number of images stored per blob."""
    if len(blob_names) != len(db_names):
        raise DataError(f"the number of blob names ({len(blob_names)}) and dataset names "
                        f"({len(db_names)}) must be equal")
    if num_batches <= 0:
        raise DataError(f"num_mini_batches must be positive, got {num_batches}")
    backend = backend_name(backend)
    if shard.count > 1:
        for db in db_names:
            os.makedirs(db, exist_ok=True)
        db_names = [str(shard_part(db, shard)) for db in db_names]
    for db in db_names:
        if os.path.exists(db) and not overwrite:
            raise DataError(f"{db} already exists; pass --overwrite to replace it")
    if shard.count > 1:
        mode.set_random_seed(SHARD_SEED)
        mode.set_data_shard(shard.index, shard.count, test=True)
    try:
        net = Net(proto, TEST, weights=weights)
    finally:
        mode.set_data_shard(0, 1)
    for name in blob_names:
        if name not in net.blobs:
            raise DataError(f"Unknown feature blob name {name} in the network {proto}")
    _warn_wraparound(net, num_batches)
    writers: list[Writer] = []
    counts = [0] * len(blob_names)
    show = sys.stderr.isatty() if progress is None else progress
    batches = range(shard.index, num_batches, shard.count)
    try:
        for db in db_names:
            writers.append(Writer(db, backend, overwrite=overwrite))
        with torch.no_grad():
            for k in tqdm(batches, disable=not show, unit="batch", file=sys.stderr):
                net.forward()
                for i, name in enumerate(blob_names):
                    data = net.blobs[name].data
                    counts[i] += _store(data, name, writers[i], k * data.shape[0])
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


def _warn_wraparound(net: Net, num_batches: int) -> None:
    """Warn when the mini-batches asked for read past the end of a data layer's source, which then
    starts again from its first item (Caffe's data layers wrap around without a word)."""
    for layer in net.modules:
        source = getattr(layer, "source", None)
        held = source.num_items() if source is not None else None
        if held is None:
            continue
        needed = source.skip + num_batches * source.batch_size
        if needed > held:
            warnings.warn(f"layer '{layer.name}' holds {held} items but {num_batches} mini-batches "
                          f"of {source.batch_size} read {needed}: items {held}..{needed - 1} of "
                          f"the output repeat earlier ones (num_mini_batches = "
                          f"ceil({held - source.skip} / {source.batch_size}) covers the data once)",
                          stacklevel=2)


def _store(data, name: str, writer: Writer, first: int) -> int:
    """Put the batch's items under the keys ``first``, ``first + 1``, ...; returns how many."""
    num, channels, height, width = legacy_shape(data.shape, name)
    rows = data.reshape(num, -1)
    for n in range(num):
        writer.put(f"{first + n:010d}", float_datum_bytes(rows[n], channels, height, width))
        if writer.count % _COMMIT_EVERY == 0:
            writer.commit()
    return num


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
               "leveldb GPU 0. Memory does not grow with the input: one mini-batch of blobs, the batches the "
               "data layers prefetch (data_param.prefetch, default 4) and up to 1,000 records per output "
               "database before each commit.")
    p.add_argument("weights", metavar="pretrained_net_param", help=".caffemodel")
    p.add_argument("proto", metavar="feature_extraction_proto_file", help="net .prototxt")
    p.add_argument("blobs", metavar="extract_feature_blob_name1[,name2,...]")
    p.add_argument("dbs", metavar="save_feature_dataset_name1[,name2,...]")
    p.add_argument("num_batches", metavar="num_mini_batches", type=int)
    p.add_argument("backend", metavar="db_type", help="leveldb or lmdb")
    p.add_argument("device", metavar="CPU/GPU", nargs="?", default="CPU")
    p.add_argument("device_id", metavar="DEVICE_ID", nargs="?", type=int, default=None,
                   help="CUDA device (default 0; under torchrun or srun the rank's local rank)")
    p.add_argument("--overwrite", action="store_true", help="replace existing databases")
    p.add_argument("--no_progress", action="store_true", help="no progress bar")
    add_shard_argument(p, "mini-batches")
    return p


def main(argv: list[str] | None = None) -> int:
    def _main(args: list[str]) -> int:
        a = build_parser().parse_args(args)
        if a.device.upper() == "GPU":
            if a.device_id is None:
                job = launch_environment()
                a.device_id = job.local_rank if job is not None else 0
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
                a.backend, overwrite=a.overwrite, progress=False if a.no_progress else None,
                shard=resolve_shard(a.shard))
        return 0
    return run_main(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
