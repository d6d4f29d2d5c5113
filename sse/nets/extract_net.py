"""The extraction form of a test prototxt: what ``extract_features`` runs on unlabelled crops.

A test prototxt ends in losses and Accuracy, which need a real label for every image; the crops of
a video to be scored are listed with label -1 (unknown). The extraction form keeps every layer up to
``prob`` and drops each layer that reads the data layer's label (SoftmaxWithLoss, Accuracy, ...), so
any label, -1 included, passes. With ``size`` the ImageData layer resizes every image to size x size
(``new_height`` / ``new_width``), so crops of any size feed a net of any input size. The result is a
plain Caffe prototxt: a real Caffe build runs it too.

    sse-extract-net TEST.prototxt OUT.prototxt [--size N]    (or python -m sse.nets.extract_net)
"""
from __future__ import annotations

import argparse
import os
import sys

from caffe.errors import CaffeError
from caffe.model_io import read_net, write_text
from caffe.proto import caffe_pb2
from caffe.tools.cli_util import report_error

PROG = "sse-extract-net"

_DATA_TYPES = ("ImageData", "Data", "HDF5Data", "MemoryData", "WindowData")


class ExtractNetError(ValueError):
    """A test prototxt that has no extraction form (names the file and what is missing)."""


def extraction_net(net: caffe_pb2.NetParameter, size: int | None = None,
                   source: str = "<net>") -> caffe_pb2.NetParameter:
    """A copy of ``net`` without the layers that read labels, its ImageData resized to ``size``."""
    out = caffe_pb2.NetParameter()
    out.CopyFrom(net)
    data = [layer for layer in out.layer if layer.type in _DATA_TYPES]
    if not data:
        raise ExtractNetError(f"{source}: no data layer ({', '.join(_DATA_TYPES)}) to extract from")
    labels = {top for layer in data for top in layer.top[1:]}
    kept = [layer for layer in out.layer if not labels.intersection(layer.bottom)]
    if not any(top == "prob" for layer in kept for top in layer.top):
        raise ExtractNetError(f"{source}: no layer left that writes 'prob' once the label readers go")
    del out.layer[:]
    out.layer.extend(kept)
    if size is not None:
        if size < 1:
            raise ExtractNetError(f"size must be positive, got {size}")
        images = [layer for layer in out.layer if layer.type == "ImageData"]
        if not images:
            raise ExtractNetError(f"{source}: --size needs an ImageData layer, found none")
        for layer in images:
            layer.image_data_param.new_height = size
            layer.image_data_param.new_width = size
    return out


def write_extraction_net(test_prototxt: str | os.PathLike, out: str | os.PathLike,
                         size: int | None = None) -> None:
    """Read ``test_prototxt``, write its extraction form to ``out`` (atomically)."""
    write_text(extraction_net(read_net(test_prototxt), size, str(test_prototxt)), out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("test_prototxt")
    p.add_argument("out")
    p.add_argument("--size", type=int, help="ImageData resizes every image to SIZE x SIZE")
    args = p.parse_args(argv)
    try:
        write_extraction_net(args.test_prototxt, args.out, args.size)
    except (ExtractNetError, CaffeError, OSError) as exc:
        return report_error(PROG, exc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
