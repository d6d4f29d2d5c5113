"""From snapshots to shipped models: selection on PublicTest, one scoring of PrivateTest, the
model folder with its card, and the ensemble of the shipped members.

Nothing here looks at PrivateTest to choose: the snapshot, the test-time augmentation shown as
a model's default and the ensemble weights are all chosen on PublicTest; PrivateTest is scored
once for what was chosen (and once per test-time augmentation mode, reported separately).
"""
from __future__ import annotations

import json
import os
import platform
import re
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from caffe import atomic, model_io
from caffe.io import array_to_blobproto
from caffe.tools.plot_log import plot_curves, read_log

from ..classes import CLASS_NAMES
from ..fusion import evaluate, save_confusion_png, search_weights
from ..shipped import TTA_MODES, EmotionModel, Ensemble, Preprocessing, fuse
from ..faces.crop import CropSpec
from .data import PAD, SIZE, Fer2013Error, load_prepared
from .recipe import Member, describe_schedule, snapshots

SUBSET = 500  # the first faces of PublicTest that a shipped model's test re-scores
PREFIX = "fer2013_"


def describe_machine() -> str:
    """'<CPU model>, <n> cores, CPU only', for model cards and the benchmark table."""
    with open("/proc/cpuinfo") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")),
                   platform.processor())
    return f"{cpu}, {os.cpu_count()} cores, CPU only"


def preprocessing(work: Path) -> Preprocessing:
    info = json.loads((work / "data.json").read_text())
    crop = CropSpec.from_json(info["crop"]) if "crop" in info else None
    return Preprocessing(input_size=SIZE, channels=1, mean_value=(info["mean_value"],),
                         classes=CLASS_NAMES, tencrop_pad=PAD, crop=crop)


def deploy_path(member: Member, work: Path) -> Path:
    return next((work / member.name).glob("SSE-*/*_deploy.prototxt"))


@dataclass
class Selection:
    """What ``select`` chose and measured for one member (saved as result.json)."""

    name: str
    form: str
    curve: list[tuple[int, float]]
    best_iter: int
    public: dict[str, float]
    private: dict[str, float]
    private_macro_f1: float
    private_recall: list[float]
    params: int

    def to_json(self) -> dict:
        return dict(self.__dict__)


def candidates(member: Member, work: str | Path) -> list[tuple[int, Path]]:
    """(iteration, weights) a member's shipped weights are chosen from: its snapshots, and for a
    warm-started member the warm-start weights as iteration 0 (the schedule may not beat them)."""
    start = Path(work) / member.name / "warm_start.caffemodel"
    return ([(0, start)] if member.warm_start and start.is_file() else []) + snapshots(member, work)


def score_snapshots(member: Member, work: str | Path, data: str | Path, log=print) -> list[tuple[int, float]]:
    """(iteration, PublicTest accuracy, single crop) of every snapshot; scores are kept in
    ``public_curve.json`` so that a run during training only scores the new snapshots."""
    work = Path(work)
    cache_path = work / member.name / "public_curve.json"
    cache = {int(k): v for k, v in json.loads(cache_path.read_text()).items()} if cache_path.exists() else {}
    todo = [(it, path) for it, path in candidates(member, work) if it not in cache]
    if todo:
        prep, deploy = preprocessing(work), deploy_path(member, work)
        faces, labels = load_prepared(data, work, "PublicTest")
        for it, path in todo:
            probs = EmotionModel(deploy, path, prep).probs(faces)
            cache[it] = float((probs.argmax(1) == labels).mean())
            atomic.write_text(cache_path, json.dumps(cache, indent=1) + "\n")
            log(f"{member.name} iteration {it}: PublicTest {cache[it]:.4f}")
    return sorted(cache.items())


def select(member: Member, work: str | Path, data: str | Path, log=print) -> Selection:
    """Score every snapshot on PublicTest (single crop), keep the best, score it on PublicTest
    and PrivateTest with each test-time augmentation; probabilities saved as ``.npy``."""
    work = Path(work)
    snaps = candidates(member, work)
    if not snapshots(member, work):
        raise Fer2013Error(f"{work / member.name}: no snapshots (snap_iter_*.caffemodel) to select from")
    prep, deploy = preprocessing(work), deploy_path(member, work)
    public_faces, public_labels = load_prepared(data, work, "PublicTest")
    curve = score_snapshots(member, work, data, log)
    best_iter = max(curve, key=lambda c: (c[1], c[0]))[0]
    model = EmotionModel(deploy, dict(snaps)[best_iter], prep)
    private_faces, private_labels = load_prepared(data, work, "PrivateTest")
    public, private, private_probs = {}, {}, {}
    out = work / member.name
    for tta in TTA_MODES:
        for split, faces, labels, acc in (("public", public_faces, public_labels, public),
                                          ("private", private_faces, private_labels, private)):
            probs = model.probs(faces, tta)
            np.save(out / f"{split}_{tta}.npy", probs)
            acc[tta] = float((probs.argmax(1) == labels).mean())
            if split == "private":
                private_probs[tta] = probs
        log(f"{member.name} iteration {best_iter}, {tta}: PublicTest {public[tta]:.4f}, "
            f"PrivateTest {private[tta]:.4f}")
    result = evaluate(private_probs["none"], private_labels)
    sel = Selection(name=member.name, form=member.form, curve=curve, best_iter=best_iter, public=public,
                    private=private, private_macro_f1=float(result.macro_f1),
                    private_recall=[float(r) for r in result.recall],
                    params=int(sum(p.numel() for p in model.net.learnable_params)))
    atomic.write_text(out / "result.json", json.dumps(sel.to_json(), indent=1) + "\n")
    return sel


def load_selection(member: Member, work: str | Path) -> Selection:
    path = Path(work) / member.name / "result.json"
    if not path.is_file():
        raise Fer2013Error(f"{path}: not selected yet (run `python -m sse.fer2013 --work {work} select {member.name}`)")
    return Selection(**json.loads(path.read_text()))


def training_stats(log_path: Path, batch: int) -> dict:
    """Training time and images/s of a ``caffe train`` log (from its glog time stamps): the log may
    hold several runs (resumed stages, restarts, appended by ``train_fer2013.sh``), each starting at
    its ``Solving`` line; the time between runs is not counted."""
    stamp = re.compile(r"^I(\d\d)(\d\d) (\d\d):(\d\d):(\d\d)\.\d+ ")
    display = re.compile(r"\] Iteration (\d+) \(")
    runs: list[list[tuple[float, int]]] = []
    for line in log_path.read_text(errors="replace").splitlines():
        m = stamp.match(line)
        if not m:
            continue
        if "] Solving " in line or not runs:
            runs.append([])
        d = display.search(line)
        if d:
            when = datetime(2000, int(m.group(1)), int(m.group(2)), int(m.group(3)), int(m.group(4)),
                            int(m.group(5)))
            runs[-1].append(((when - datetime(2000, 1, 1)).total_seconds(), int(d.group(1))))
    seconds = sum(run[-1][0] - run[0][0] for run in runs if len(run) > 1)
    images = sum(run[-1][1] - run[0][1] for run in runs if len(run) > 1) * batch
    if seconds <= 0:
        return {"seconds": 0.0, "images_per_s": 0.0}
    return {"seconds": float(seconds), "images_per_s": images / seconds}


def ship(member: Member, work: str | Path, models: str | Path, data: str | Path, log_path: Path,
         machine: str) -> Path:
    """Write ``models/fer2013_<name>/``: deploy, weights, mean, model.json, PNGs and the card."""
    work, models = Path(work), Path(models)
    sel = load_selection(member, work)
    prep = preprocessing(work)
    folder = models / f"{PREFIX}{member.name}"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(deploy_path(member, work), folder / "deploy.prototxt")
    shutil.copyfile(dict(candidates(member, work))[sel.best_iter], folder / "model.caffemodel")
    mean = np.full((1, 1, SIZE, SIZE), prep.mean_value[0], np.float32)
    model_io.write_blobproto(array_to_blobproto(mean), folder / "mean.binaryproto")
    meta = {"name": folder.name, "input_size": SIZE, "channels": 1, "mean_value": list(prep.mean_value),
            "scale": 1.0, "classes": list(CLASS_NAMES), "output": "prob", "tencrop_pad": PAD,
            "tta": max(TTA_MODES, key=lambda t: (sel.public[t], -TTA_MODES.index(t)))}
    if prep.crop is not None:
        meta["crop"] = prep.crop.to_json()
    public_faces, public_labels = load_prepared(data, work, "PublicTest")
    atomic.write_text(folder / "model.json", json.dumps(meta, indent=1) + "\n")
    model = EmotionModel.from_dir(folder)
    subset = model.probs(public_faces[:SUBSET])
    meta["publictest_subset"] = {"faces": SUBSET,
                                 "accuracy": float((subset.argmax(1) == public_labels[:SUBSET]).mean())}
    atomic.write_text(folder / "model.json", json.dumps(meta, indent=1) + "\n")
    curves = read_log(log_path)
    for it, acc in sel.curve:
        curves.add_test(it, 0, "PublicTest accuracy", acc)
    plot_curves(curves, folder / "training_curves.png", title=f"{folder.name} on FER2013 Training")
    _, private_labels = load_prepared(data, work, "PrivateTest")
    result = evaluate(np.load(work / member.name / "private_none.npy"), private_labels)
    save_confusion_png(result, folder / "confusion_privatetest.png",
                       title=f"{folder.name}, FER2013 PrivateTest: {result.accuracy:.1%}")
    stats = training_stats(log_path, member.batch)
    info = json.loads((work / "data.json").read_text())
    atomic.write_text(folder / "README.md", card(member, sel, meta, stats, machine, info))
    return folder


def card(member: Member, sel: Selection, meta: dict, stats: dict, machine: str, info: dict | None = None) -> str:
    """The model card (README.md of the model folder)."""
    recall = ", ".join(f"{c} {r:.2f}" for c, r in zip(CLASS_NAMES, sel.private_recall))
    info = info or {}
    head = f"--head-width {member.head_width} " if member.head_width else ""
    head += f"--trunk-width {member.trunk_width} " if member.trunk_width != 1 else ""
    trained = max(it for it, _ in sel.curve)
    unfinished = (f" Shipped before its schedule ended: trained to iteration {trained} of {member.iterations} "
                  f"(`models/train_fer2013.sh {member.name}` resumes the next stage from its snapshots)."
                  if trained < member.iterations else "")
    lines = [
        f"# {meta['name']}: SSE-HoloNet {member.form} trained on FER2013", "",
        "Facial expression classifier for 48x48 grayscale face crops, seven classes in the toolkit's order "
        f"({', '.join(CLASS_NAMES)}). Trained by this toolkit's `caffe train`; loads in this engine "
        "(`caffe.Net`, `sse.shipped.load`) and in OpenCV dnn 4.x (`cv2.dnn.readNetFromCaffe`).", "",
        "## Files", "",
        "* `deploy.prototxt`: Input `data` 1x1x48x48, output `prob` (Softmax).",
        f"* `model.caffemodel`: the snapshot of iteration {sel.best_iter}, chosen on PublicTest"
        + (" (iteration 0: the warm-start weights)." if member.warm_start else "."),
        f"* `mean.binaryproto` / `model.json` `mean_value`: the Training pixel mean {meta['mean_value'][0]:.4f} "
        "(subtracted, no scaling); `model.json` also holds the class order and the ten-crop padding.",
        "* `training_curves.png`: training loss and rate, and PublicTest accuracy of each snapshot; "
        "`confusion_privatetest.png`.", "",
        "## Data and protocol", "",
        "FER2013 (Goodfellow et al. 2013), official splits: Training (28,709 faces) to train, PublicTest "
        "(3,589) to choose the snapshot, the test-time augmentation default and the ensemble weights, "
        "PrivateTest (3,589) scored once for what was chosen. " + faces_text(meta, info) + " Training augmentation: "
        + (f"random 48x48 crops of the face cut with {PAD} px of real surroundings on each side, " if "crop" in meta
           else f"random 48x48 crops of the face padded by {PAD} px (reflected edges), ")
        + "random mirror, rotation up to "
        f"±{member.max_rotation:g}° and scale ±{member.max_scale_jitter:.0%} (the toolkit's "
        "`transform_param` extension `max_rotation` / `max_scale_jitter`, which real Caffe rejects).", "",
        "## How it was made", "",
        "```bash",
        f"models/train_fer2013.sh {member.name} work/fer2013        # LMDBs, nets, caffe train (resumes)",
        f"python -m sse.fer2013 --work work/fer2013 select {member.name}",
        f"python -m sse.fer2013 --work work/fer2013 ship {member.name} --log work/fer2013/{member.name}/train.log",
        "```", "",
        f"Net: `sse-gen-nets --backbone holonet --variant {member.form} --input-size 48 --crop-size 48 "
        f"{head}--channels 1 --mirror true --max-rotation {member.max_rotation:g} --max-scale-jitter "
        f"{member.max_scale_jitter:g}` ({sel.params / 1e6:.2f} M parameters). Solver: SGD, momentum 0.9, "
        f"weight decay {member.weight_decay:g}, {describe_schedule(member)}; random_seed {member.seed}, a snapshot "
        f"every {member.snapshot}." + (f" {member.note}." if member.note else "") + unfinished, "",
        f"Machine: {machine}. Wall time {stats['seconds'] / 60:.0f} min, "
        f"{stats['images_per_s']:.0f} training images/s (one torch thread, on cores shared with other "
        "models training side by side and other work of the session)"
        + (", this schedule only (the warm-start weights' own training is in that commit's card)." if member.warm_start
           else "."), "",
        "## Results", "",
        "| test-time augmentation | PublicTest | **PrivateTest** |", "| --- | ---: | ---: |",
    ]
    for tta in TTA_MODES:
        lines.append(f"| {tta} | {sel.public[tta]:.2%} | **{sel.private[tta]:.2%}** |")
    lines += [
        "", f"Default test-time augmentation (best on PublicTest): `{meta['tta']}`. PrivateTest macro-F1 "
        f"(single crop): {sel.private_macro_f1:.3f}. PrivateTest recall per class (single crop): {recall}.",
        "", "PublicTest accuracy of each snapshot (single crop): "
        + ", ".join(f"{it}: {acc:.3f}" for it, acc in sel.curve) + ".", "",
        f"The first {meta['publictest_subset']['faces']} PublicTest faces score "
        f"{meta['publictest_subset']['accuracy']:.2%} (single crop); `tests/test_models_shipped.py` checks it.",
        "", "## Limits", "",
        "FER2013 faces are small, frontal-ish web images with noisy labels (human accuracy is about 65 %); "
        "Disgust has 436 training faces. "
        + ("`sse-predict` and `sse.shipped` cut this model's own crop (`model.json` `crop`) from the source "
           "frame at the face pipeline's landmarks, as its training data was cut; the section below measures "
           "what is left of the gap between photos and ready-made crops." if "crop" in meta else
           "Crops from `sse-preprocess` are aligned differently from FER2013's, so expect lower accuracy on "
           "video frames than on this test set."), ""]
    return "\n".join(lines)


def faces_text(meta: dict, info: dict) -> str:
    """How the training faces were made, for the card."""
    if "crop" not in meta:
        return "Faces: FER2013's own 48x48 pictures."
    crop = meta["crop"]
    detected = info.get("detected", {})
    return ("Faces: every FER2013 face through the toolkit's face pipeline (`python -m sse.fer2013 prepare`: "
            "enlarged 3x with reflected surroundings, dlib HOG detection, 68 landmarks), then cut by "
            "`sse.faces.crop.cut_crop` with the crop of `model.json`: the least-squares similarity of all 68 "
            f"landmarks onto the mean face placed with its eye distance {crop['eye_distance']:g} and its eye line "
            f"{crop['eye_height']:g} of the 48-pixel side, the median framing of the Training faces "
            f"(`python -m sse.fer2013 framing`). The detector found {detected.get('Training', 0):.1%} of Training, "
            f"{detected.get('PublicTest', 0):.1%} of PublicTest and {detected.get('PrivateTest', 0):.1%} of "
            "PrivateTest; a face it misses is given the mean FER2013 landmarks (it is taken to be framed as "
            "FER2013 frames its faces on average, and cut as its own picture).")


def build_ensemble(members: list[Member], work: str | Path, models: str | Path, data: str | Path,
                   step: float = 0.05) -> dict:
    """Weights searched on PublicTest (single crop) over the shipped members, applied once to
    PrivateTest; written as ``models/fer2013_ensemble.json``."""
    work, models = Path(work), Path(models)
    _, public_labels = load_prepared(data, work, "PublicTest")
    _, private_labels = load_prepared(data, work, "PrivateTest")
    names = [f"{PREFIX}{m.name}" for m in members]
    public = {t: [np.load(work / m.name / f"public_{t}.npy") for m in members] for t in TTA_MODES}
    private = {t: [np.load(work / m.name / f"private_{t}.npy") for m in members] for t in TTA_MODES}
    search = search_weights(public["none"], public_labels, step=step, names=names)
    weights = [round(float(w), 6) for w in search.weights]
    spec = {"members": [{"model": n, "weight": w} for n, w in zip(names, weights)],
            "fusion": "weighted mean of the members' probabilities (sse.fusion.fuse_models)",
            "weights_chosen_on": f"FER2013 PublicTest, single crop, simplex grid step {step}",
            "public_loo_accuracy": float(search.loo_accuracy), "public": {}, "private": {}}
    for tta in TTA_MODES:
        spec["public"][tta] = _fused_accuracy(public[tta], weights, names, public_labels)
        spec["private"][tta] = _fused_accuracy(private[tta], weights, names, private_labels)
    spec["private"]["equal_weights_none"] = _fused_accuracy(private["none"], [1.0] * len(names), names,
                                                            private_labels)
    spec["tta"] = max(TTA_MODES, key=lambda t: (spec["public"][t], -TTA_MODES.index(t)))
    path = models / f"{PREFIX}ensemble.json"
    atomic.write_text(path, json.dumps(spec, indent=1) + "\n")
    public_faces, _ = load_prepared(data, work, "PublicTest")
    subset = Ensemble.from_file(path).probs(public_faces[:SUBSET])
    spec["publictest_subset"] = {"faces": SUBSET,
                                 "accuracy": float((subset.argmax(1) == public_labels[:SUBSET]).mean())}
    atomic.write_text(path, json.dumps(spec, indent=1) + "\n")
    return spec


def _fused_accuracy(probs: list[np.ndarray], weights: list[float], names: list[str], labels: np.ndarray) -> float:
    return float((fuse(probs, weights, names).argmax(1) == labels).mean())
