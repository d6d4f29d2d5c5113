"""convert_imageset: images named by a list file -> an LMDB/LevelDB of Datum, as Caffe's tool.

    convert_imageset [FLAGS] ROOTFOLDER/ LISTFILE DB_NAME

LISTFILE lines are ``subfolder1/file1.JPEG 7`` (the last space splits); each image is read from
ROOTFOLDER + path (plain concatenation, as Caffe: keep the trailing slash) with OpenCV, as 3-channel
BGR or (``--gray``) OpenCV's gray, optionally resized (INTER_LINEAR), and stored under the key
``%08d_<path>`` (its line index). An image that cannot be read is skipped with a warning, as in
Caffe. ``--encoded`` stores the file bytes (re-encoded as ``--encode_type`` when the format,
channels or size differ). An existing DB_NAME is never overwritten."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from ..data.datum import encoded_datum, image_to_datum, read_image, why_unreadable
from ..data.db import Writer, backend_name
from ..data.image_list import read_image_list
from ..errors import DataError
from .cli_util import run_main

_BOOL_FLAGS = ("gray", "shuffle", "check_size", "encoded")
_COMMIT_EVERY = 1000


def expand_bool_flags(argv: list[str], names: tuple[str, ...]) -> list[str]:
    """gflags booleans: ``--flag``, ``--flag=true|false|1|0``, ``--noflag`` -> ``--flag`` or nothing."""
    out = []
    for a in argv:
        name, _, value = a.lstrip("-").partition("=")
        if a.startswith("-") and name in names:
            if not value or value.lower() in ("true", "1", "yes"):
                out.append(f"--{name}")
            elif value.lower() not in ("false", "0", "no"):
                raise DataError(f"--{name} expects true or false, got {value!r}")
        elif a.startswith("--no") and a[4:] in names:
            continue
        else:
            out.append(a)
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="convert_imageset",
        description="Convert a set of images to an LMDB/LevelDB of Datum (Caffe's convert_imageset).",
        epilog="Example: convert_imageset --gray --resize_height=64 --resize_width=64 "
               "faces/ train_list.txt train_lmdb")
    p.add_argument("root_folder", metavar="ROOTFOLDER/", help="prefix of every image path")
    p.add_argument("list_file", metavar="LISTFILE", help="lines 'path label'")
    p.add_argument("db_name", metavar="DB_NAME", help="database to create (must not exist)")
    p.add_argument("--gray", action="store_true", help="read images as grayscale")
    p.add_argument("--shuffle", action="store_true", help="shuffle the order of the images")
    p.add_argument("--seed", type=int, default=None,
                   help="random seed of --shuffle (not a Caffe flag; default: random)")
    p.add_argument("--backend", default="lmdb", help="lmdb or leveldb (default lmdb)")
    p.add_argument("--resize_width", type=int, default=0, help="width images are resized to")
    p.add_argument("--resize_height", type=int, default=0, help="height images are resized to")
    p.add_argument("--check_size", action="store_true", help="check that all images have the same size")
    p.add_argument("--encoded", action="store_true", help="store the encoded image in the Datum")
    p.add_argument("--encode_type", default="", help="encode as this type ('png', 'jpg', ...)")
    p.add_argument("--no_progress", action="store_true", help="no progress bar")
    return p


def _encoding(path: str, encoded: bool, encode_type: str) -> str:
    """The image format to store: --encode_type, else the file's extension when --encoded."""
    if encode_type or not encoded:
        return encode_type
    dot = path.rfind(".")
    if dot < 0:
        print(f"convert_imageset: warning: failed to guess the encoding of '{path}'", file=sys.stderr)
    return path[dot + 1:].lower()


def _match_ext(filename: str, encoding: str) -> bool:
    """Caffe's matchExt: the file's extension is the encoding (jpeg counts as jpg)."""
    dot = filename.rfind(".")
    ext = (filename[dot + 1:] if dot >= 0 else filename).lower()
    enc = encoding.lower()
    return ext == enc or (enc == "jpg" and ext == "jpeg")


def image_datum(filename: str, label: int, height: int, width: int, is_color: bool,
                encoding: str):
    """Caffe's ReadImageToDatum: a raw or encoded Datum, or None if the image cannot be read."""
    img = read_image(filename, height, width, is_color)
    if img is None:
        return None
    if not encoding:
        return image_to_datum(img, label)
    channels = 3 if img.ndim == 3 else 1
    if (channels == 3) == is_color and not height and not width and _match_ext(filename, encoding):
        return encoded_datum(Path(filename).read_bytes(), label)
    ok, buf = cv2.imencode("." + encoding, img)
    if not ok:
        raise DataError(f"OpenCV cannot encode images as '{encoding}'")
    return encoded_datum(buf.tobytes(), label)


def convert(root_folder: str, list_file: str, db_name: str, *, gray: bool = False,
            shuffle: bool = False, seed: int | None = None, backend: str = "lmdb",
            resize_height: int = 0, resize_width: int = 0, check_size: bool = False,
            encoded: bool = False, encode_type: str = "", progress: bool | None = None) -> int:
    """Write the database; returns the number of images stored."""
    backend = backend_name(backend)
    entries = read_image_list(list_file)
    if shuffle:
        order = np.random.default_rng(seed).permutation(len(entries))
        entries = [entries[i] for i in order]
    print(f"A total of {len(entries)} images.", file=sys.stderr)
    height, width = max(0, resize_height), max(0, resize_width)
    data_size = None
    count = 0
    show = sys.stderr.isatty() if progress is None else progress
    with Writer(db_name, backend) as writer:
        for line_id, e in enumerate(tqdm(entries, disable=not show, unit="img", file=sys.stderr)):
            filename = root_folder + e.path
            datum = image_datum(filename, e.label, height, width, not gray,
                                _encoding(e.path, encoded, encode_type))
            if datum is None:
                print(f"convert_imageset: warning: {list_file}:{e.line}: {why_unreadable(filename)}; "
                      "skipped", file=sys.stderr)
                continue
            if check_size and not datum.encoded:
                size = datum.channels * datum.height * datum.width
                if data_size is None:
                    data_size = size
                elif len(datum.data) != data_size:
                    raise DataError(f"{list_file}:{e.line}: incorrect data field size "
                                    f"{len(datum.data)} (expected {data_size}) for {filename}")
            writer.put(f"{line_id:08d}_{e.path}", datum.SerializeToString())
            count += 1
            if count % _COMMIT_EVERY == 0:
                writer.commit()
                if not show:
                    print(f"Processed {count} files.", file=sys.stderr)
    print(f"Processed {count} files.", file=sys.stderr)
    return count


def main(argv: list[str] | None = None) -> int:
    def _main(args: list[str]) -> int:
        a = build_parser().parse_args(expand_bool_flags(args, _BOOL_FLAGS))
        if a.encode_type and not a.encoded:
            print("encode_type specified, assuming encoded=true.", file=sys.stderr)
        convert(a.root_folder, a.list_file, a.db_name, gray=a.gray, shuffle=a.shuffle,
                seed=a.seed, backend=a.backend, resize_height=a.resize_height,
                resize_width=a.resize_width, check_size=a.check_size,
                encoded=a.encoded or bool(a.encode_type), encode_type=a.encode_type,
                progress=False if a.no_progress else None)
        return 0
    return run_main(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
