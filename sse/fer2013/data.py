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

from ..faces.crop import CropSpec

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


def prepare(data: str | Path, out: str | Path, crop: CropSpec | None = None) -> dict:
    """LMDBs of the three splits under ``out`` and ``data.json`` (counts, the Training pixel mean,
    the crop and the share of faces the detector found).

    With ``crop`` every face goes through the face pipeline (``framing``: detection and landmarks,
    cached in ``out/landmarks_<split>.npz``) and is cut by ``cut_crop`` as the crop says, Training
    with ``PAD`` pixels of real surroundings; without it the faces are FER2013's own 48x48 pictures,
    Training padded by reflection. Finished databases are kept when run again."""
    from .framing import cached_landmarks, cut_faces

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    info_path = out / "data.json"
    if info_path.exists() and all((out / f"{s.lower()}_lmdb").exists() for s in SPLITS):
        return json.loads(info_path.read_text())
    info: dict = {"source": str(Path(data).resolve()), "pad": PAD, "counts": {}}
    if crop is not None:
        if crop.size != SIZE:
            raise Fer2013Error(f"the FER2013 nets take {SIZE}x{SIZE} faces, the crop is {crop.size}x{crop.size}")
        info.update(crop=crop.to_json(), detected={})
    for split in SPLITS:
        faces, labels = load_split(data, split)
        info["counts"][split] = int(len(labels))
        pad = PAD if split == "Training" else 0
        if crop is not None:
            landmarks, found = cached_landmarks(faces, out / f"landmarks_{split.lower()}.npz", _log)
            info["detected"][split] = round(float(found.mean()), 4)
            faces = cut_faces(faces, landmarks, crop, pad)
        elif pad:
            faces = pad_faces(faces, pad)
        if split == "Training":
            info["mean_value"] = round(float(faces[:, pad:faces.shape[1] - pad, pad:faces.shape[2] - pad].mean()), 4)
        db = out / f"{split.lower()}_lmdb"
        if not db.exists():
            write_lmdb(faces, labels, db, shuffle=split == "Training")
        print(f"{split}: {len(labels)} faces -> {db}", file=sys.stderr)
    atomic.write_text(info_path, json.dumps(info, indent=1) + "\n")
    return info


def load_prepared(data: str | Path, work: str | Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(faces, labels) of a split as the nets of ``work`` see them: cut with its data.json's crop
    (from the cached landmarks), or FER2013's own pictures when it has none."""
    info = json.loads((Path(work) / "data.json").read_text())
    faces, labels = load_split(data, split)
    if "crop" in info:
        from .framing import cached_landmarks, cut_faces

        landmarks, _ = cached_landmarks(faces, Path(work) / f"landmarks_{split.lower()}.npz", _log)
        faces = cut_faces(faces, landmarks, CropSpec.from_json(info["crop"]))
    return faces, labels


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
