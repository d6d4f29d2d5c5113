"""FER2013's official splits as LMDBs of Datum (Training padded for random crops) and data.json."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np

from caffe import atomic
from caffe.data.db import Writer
from caffe.io import array_to_datum

from ..classes import label_mapping

SPLITS = ("Training", "PublicTest", "PrivateTest")
SIZE = 48
PAD = 4
SHUFFLE_SEED = 2013


class Fer2013Error(ValueError):
    """A FER2013 file that is missing or not in the expected form (names the file)."""


def load_split(root: str | Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(faces uint8 N x 48 x 48, labels in the toolkit's class order) of one official split."""
    path = Path(root) / f"{split}.npz"
    if not path.is_file():
        raise Fer2013Error(f"{path}: FER2013 split not found (expected {', '.join(SPLITS)} .npz files)")
    try:
        d = np.load(path)
        buf, off, labels = d["jpeg_data"], d["jpeg_offsets"], d["labels"]
    except (OSError, ValueError, KeyError) as exc:
        raise Fer2013Error(f"{path}: not a FER2013 .npz with jpeg_data, jpeg_offsets, labels ({exc})") from exc
    faces = np.empty((len(off) - 1, SIZE, SIZE), np.uint8)
    for i in range(len(faces)):
        face = cv2.imdecode(buf[off[i]:off[i + 1]], cv2.IMREAD_GRAYSCALE)
        if face is None or face.shape != (SIZE, SIZE):
            raise Fer2013Error(f"{path}: image {i} is not a decodable {SIZE}x{SIZE} JPEG")
        faces[i] = face
    return faces, label_mapping("fer2013")[labels]


def pad_faces(faces: np.ndarray, pad: int = PAD) -> np.ndarray:
    """N x H x W faces padded by ``pad`` pixels on every side, edges reflected (as stored for TRAIN)."""
    return np.stack([cv2.copyMakeBorder(f, pad, pad, pad, pad, cv2.BORDER_REFLECT_101) for f in faces])


def write_lmdb(faces: np.ndarray, labels: np.ndarray, path: Path, shuffle: bool) -> None:
    """An LMDB of 1-channel Datum (keys ``%08d``), shuffled with a fixed seed when asked."""
    order = np.random.default_rng(SHUFFLE_SEED).permutation(len(labels)) if shuffle else np.arange(len(labels))
    tmp = path.with_name(path.name + ".partial")
    with Writer(tmp, "lmdb") as writer:
        for k, i in enumerate(order):
            writer.put(f"{k:08d}", array_to_datum(faces[i][None], int(labels[i])).SerializeToString())
    tmp.rename(path)


def prepare(data: str | Path, out: str | Path) -> dict:
    """LMDBs of the three splits under ``out`` and ``data.json`` (counts, the Training pixel mean).

    Finished databases are kept when run again."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    info_path = out / "data.json"
    if info_path.exists() and all((out / f"{s.lower()}_lmdb").exists() for s in SPLITS):
        return json.loads(info_path.read_text())
    info: dict = {"source": str(Path(data).resolve()), "pad": PAD, "counts": {}}
    for split in SPLITS:
        faces, labels = load_split(data, split)
        info["counts"][split] = int(len(labels))
        if split == "Training":
            info["mean_value"] = round(float(faces.mean()), 4)
            faces = pad_faces(faces)
        db = out / f"{split.lower()}_lmdb"
        if not db.exists():
            write_lmdb(faces, labels, db, shuffle=split == "Training")
        print(f"{split}: {len(labels)} faces -> {db}", file=sys.stderr)
    atomic.write_text(info_path, json.dumps(info, indent=1) + "\n")
    return info
