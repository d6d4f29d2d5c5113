"""Caffe's data side: Datum databases (LMDB/LevelDB), the DataTransformer, image lists, batch
sources and prefetching worker processes. The layers that use them are in caffe/layers/data.py."""
from __future__ import annotations

from .datum import datum_pixels, image_to_datum, parse_datum, read_image
from .db import Writer, backend_name, iterate, open_cursor
from .image_list import ListEntry, read_image_list
from .prefetch import Prefetcher, num_workers, set_num_workers
from .sources import BatchSource, DBSource, ImageListSource
from .transformer import DataTransformer, TransformSpec, load_mean_file

__all__ = [
    "BatchSource", "DBSource", "DataTransformer", "ImageListSource", "ListEntry", "Prefetcher",
    "TransformSpec", "Writer", "backend_name", "datum_pixels", "image_to_datum", "iterate",
    "load_mean_file", "num_workers", "open_cursor", "parse_datum", "read_image",
    "read_image_list", "set_num_workers",
]
