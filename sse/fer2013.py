"""FER2013 for the toolkit: the official splits as LMDBs of Datum, and the recipe that trains the
shipped models (``models/fer2013_*``) with ``caffe train``.

The data is the ``.npz`` form of FER2013 described in ``../shared/data/PROVENANCE.md`` (JPEG bytes,
offsets, labels in FER2013's own order). Labels are mapped to the toolkit's class order
(``sse.classes``). Training faces are stored padded by ``PAD`` pixels (edges reflected), so that
the net's ``crop_size: 48`` takes random 48x48 crops in TRAIN (shifts of up to ``PAD`` pixels);
PublicTest and PrivateTest are stored at 48x48, where the centred crop is the face itself.

    python -m sse.fer2013 prepare --data ../shared/data/fer2013 --out work/fer2013
    python -m sse.fer2013 nets holonet48_3conv-s_concat --work work/fer2013
    caffe train --solver=work/fer2013/holonet48_3conv-s_concat/solver.prototxt

(``models/train_fer2013.sh`` runs those steps, resuming from the newest snapshot.)
PublicTest is the validation split (model selection, fusion weights); PrivateTest is the final
test set: it is scored once per shipped model and never used to choose anything.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from caffe import atomic, model_io
from caffe.data.db import Writer
from caffe.io import array_to_datum

from .classes import label_mapping
from .nets.common import DataConfig
from .nets.generate import write_variant

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


@dataclass(frozen=True)
class Member:
    """One shipped FER2013 model: the SSE form, its head width and its training schedule."""

    name: str
    form: str
    head_width: int | None = None
    seed: int = 1701
    iterations: int = 6000
    batch: int = 64
    base_lr: float = 0.02
    weight_decay: float = 5e-4
    snapshot: int = 1000
    max_rotation: float = 10.0
    max_scale_jitter: float = 0.1


MEMBERS = {m.name: m for m in (
    Member("holonet48_3conv-s_concat", "3conv-s+concat", seed=1701),
    Member("holonet48_4conv-c_concat", "4conv-c+concat", head_width=128, seed=1702),
    Member("holonet48_3conv-s_eltwise", "3conv-s+eltwise", seed=1703),
    Member("holonet48_original", "original", seed=1704),
)}


def get_member(name: str) -> Member:
    if name not in MEMBERS:
        raise Fer2013Error(f"unknown FER2013 model '{name}' (one of {', '.join(MEMBERS)})")
    return MEMBERS[name]


def make_nets(member: Member, work: str | Path) -> dict[str, Path]:
    """The member's train/test/deploy prototxts and solver under ``work/<name>/``.

    SGD with momentum 0.9 and a linear decay of the rate to zero (``poly``, power 1) over the
    schedule; Caffe's own test runs are off (``select`` scores every snapshot on PublicTest)."""
    work = Path(work)
    info = json.loads((work / "data.json").read_text())
    cfg = DataConfig(input_size=SIZE, channels=1, mean_value=(info["mean_value"],), mirror=True,
                     crop_size=SIZE, max_rotation=member.max_rotation,
                     max_scale_jitter=member.max_scale_jitter,
                     train_source=str(work / "training_lmdb"), val_source=str(work / "publictest_lmdb"),
                     test_list="test_file_list.txt", train_batch=member.batch, val_batch=97, test_batch=97)
    folder = work / member.name
    paths = write_variant("holonet", member.form, folder, cfg, max_iter=member.iterations,
                          solver_mode="CPU", head_width=member.head_width)
    solver = model_io.read_solver(paths["solver"])
    solver.base_lr = member.base_lr
    solver.lr_policy = "poly"
    solver.power = 1.0
    solver.ClearField("stepsize")
    solver.ClearField("gamma")
    solver.weight_decay = member.weight_decay
    solver.display = 100
    solver.average_loss = 100
    solver.test_interval = member.iterations + 1
    solver.test_initialization = False
    del solver.test_iter[:]
    solver.test_iter.append(1)
    solver.snapshot = member.snapshot
    solver.snapshot_prefix = str(folder / "snap")
    solver.random_seed = member.seed
    model_io.write_text(solver, paths["solver"])
    return paths


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sse.fer2013", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    prep = sub.add_parser("prepare", help="LMDBs of the three splits and data.json")
    prep.add_argument("--data", default="../shared/data/fer2013")
    prep.add_argument("--out", default="work/fer2013")
    nets = sub.add_parser("nets", help="prototxts and solver of one shipped model")
    nets.add_argument("member", choices=sorted(MEMBERS))
    nets.add_argument("--work", default="work/fer2013")
    args = p.parse_args(argv)
    try:
        if args.command == "prepare":
            print(json.dumps(prepare(args.data, args.out)))
        else:
            for path in make_nets(get_member(args.member), args.work).values():
                print(path)
    except Fer2013Error as exc:
        print(f"sse.fer2013: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
