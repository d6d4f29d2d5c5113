"""Accuracy on the path users take: labelled faces as photos through `sse-predict`, beside the same
faces given to the models as ready-made crops.

Each FER2013 face of a split becomes a photo as a camera would see it (``photo``): enlarged 2.5-4x
(bicubic) and set at a random place into a 320x240 picture whose surroundings are the face's own
tones, blurred (a soft scene, no second face), with a feathered edge, saved as JPEG. The photos go
through `sse-predict` with its defaults (every shipped model and ensemble; dlib HOG, then dlib's CNN
detector on a photo where HOG finds nothing; landmarks; each model's own crop cut from the photo;
test-time augmentation `none`). Per model and for the ensemble:

* faces found: photos with a person (the largest face is person 1; its row is the one scored);
* accuracy through the pipeline on the found faces, and the same faces' accuracy given as crops
  (FER2013's own 48x48 pictures, the model's input as they are), and the two predictions' agreement.

``--compare-crops COMMIT`` also scores the found faces with the shipped models of an older commit
(models that learned FER2013's own pictures and never saw any of these crops) through several crop
definitions cut at the pipeline's landmarks: which definition frames faces as FER2013 does.

PublicTest for every choice; PrivateTest once at the end. Writes
bench/results/pipeline_accuracy_<split>.md and .json, and (``--cards``) each shipped model card's
section "Through the face pipeline".

    python bench/pipeline_accuracy.py [--split PublicTest] [--limit N] [--jobs N] [--compare-crops COMMIT] [--cards]
"""
from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench_faces import cpu_model  # noqa: E402
from caffe import atomic  # noqa: E402
from sse.faces.crop import CropSpec  # noqa: E402
from sse.faces.detect import SECOND_DETECTORS, FaceDetector  # noqa: E402
from sse.fer2013.data import load_split  # noqa: E402
from sse.fer2013.framing import FER2013_FRAMING  # noqa: E402
from sse.predict.cli import main as predict_main  # noqa: E402
from sse.predict.models import MODELS_DIR, load_scorers  # noqa: E402
from sse.shipped import MODEL_FILES, Ensemble, FaceCrops, load  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "fer2013"
RESULTS = REPO / "bench" / "results"
CANVAS = (320, 240)
CARD_BEGIN = "<!-- pipeline_accuracy: begin -->"
CARD_END = "<!-- pipeline_accuracy: end -->"


def photo(face: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A 48x48 gray face as a BGR camera picture: enlarged, placed into soft surroundings."""
    width, height = CANVAS
    side = int(round(48 * rng.uniform(2.5, 4.0)))
    big = cv2.resize(face, (side, side), interpolation=cv2.INTER_CUBIC).astype(np.float32)
    scene = cv2.GaussianBlur(cv2.resize(face, (width, height), interpolation=cv2.INTER_LINEAR), (0, 0), 25)
    scene = scene.astype(np.float32) + rng.normal(0, 3, (height, width))
    x, y = int(rng.integers(0, width - side + 1)), int(rng.integers(0, height - side + 1))
    ramp = np.clip(np.minimum(np.arange(side), np.arange(side)[::-1]) / 8.0, 0, 1)
    alpha = np.minimum.outer(ramp, ramp)
    scene[y:y + side, x:x + side] = alpha * big + (1 - alpha) * scene[y:y + side, x:x + side]
    gray = np.clip(scene + 0.5, 0, 255).astype(np.uint8)
    return cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)


def write_photos(faces: np.ndarray, folder: Path, split: str, seed: int = 2017) -> list[str]:
    """The photos as JPEG files (quality 95); returns their ids (file stems) in face order."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    ids = []
    for i, face in enumerate(faces):
        ids.append(f"{split}_{i:05d}")
        cv2.imwrite(str(folder / f"{ids[-1]}.jpg"), photo(face, rng), [cv2.IMWRITE_JPEG_QUALITY, 95])
    return ids


def read_predictions(out: Path) -> dict[str, dict[str, np.ndarray]]:
    """model -> photo id (the file stem) -> the 7 probabilities of person 1 (the largest face)."""
    rows: dict[str, dict[str, np.ndarray]] = {}
    with open(out / "predictions.csv", newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        first = header.index("Angry")
        for row in reader:
            if row[header.index("person")] == "1":
                rows.setdefault(row[header.index("model")], {})[Path(row[header.index("video")]).name] = \
                    np.array(row[first:first + 7], np.float64)
    return rows


def manifest_landmarks(out: Path, video: str) -> np.ndarray:
    """Person 1's landmarks in the photo, from the face pipeline's manifest."""
    manifest = json.loads((out / "faces" / "photos" / video / "manifest.json").read_text())
    return np.array(next(f["landmarks"] for f in manifest["frames"] if f.get("person") == 1 and f.get("crop")),
                    np.float64)


def model_folders_at(commit: str, dest: Path) -> Path:
    """The shipped model folders and ensemble file of an older commit, written under ``dest``."""
    listing = subprocess.run(["git", "ls-tree", "-r", "--name-only", commit, "models/"], cwd=REPO,
                             check=True, capture_output=True, text=True).stdout.split()
    for path in listing:
        if path.endswith(".json") or Path(path).name in (*MODEL_FILES, "mean.binaryproto"):
            target = dest / Path(path).relative_to("models")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(subprocess.run(["git", "show", f"{commit}:{path}"], cwd=REPO, check=True,
                                              capture_output=True).stdout)
    return dest


def compare_crops(commit: str, photos: Path, out: Path, ids: list[str], found: list[str], labels: np.ndarray,
                  faces: np.ndarray) -> list[tuple[str, float, float]]:
    """(crop definition, accuracy of the older ensemble on the found faces, agreement with it on the
    faces as crops) for several crop definitions cut at the pipeline's landmarks."""
    with tempfile.TemporaryDirectory() as tmp:
        ensemble = load(model_folders_at(commit, Path(tmp)) / "fer2013_ensemble.json")
        index = {v: i for i, v in enumerate(ids)}
        rows = [index[v] for v in found]
        images = [cv2.imread(str(photos / f"{v}.jpg")) for v in found]
        landmarks = [manifest_landmarks(out, v) for v in found]
        direct = ensemble.probs(faces[rows]).argmax(1)
        y = labels[rows]
        specs = {
            "the release's 128x128 AFEW crop, resized to 48 (sse-predict before)": CropSpec(128, gray=True),
            f"FER2013 framing on all 68 landmarks (eye distance {FER2013_FRAMING.eye_distance}, "
            f"eye line {FER2013_FRAMING.eye_height})": FER2013_FRAMING,
            "FER2013 framing on the eyes only": CropSpec(48, FER2013_FRAMING.eye_distance,
                                                         FER2013_FRAMING.eye_height, "eyes", True),
            "tighter, eyes-aligned (eye distance 0.40, eye line 0.38)": CropSpec(48, 0.40, 0.38, "eyes", True),
        }
        result = []
        for name, spec in specs.items():
            crops = FaceCrops.from_images(images, landmarks, [spec]).crops(spec)
            pred = ensemble.probs(crops).argmax(1)
            result.append((name, float((pred == y).mean()), float((pred == direct).mean())))
        return result


def detector_recall(photos: Path, ids: list[str]) -> list[dict]:
    """Per second detector (as the pipeline calls it on a photo: HOG at upsample 1, then the second
    one where HOG finds nothing): the share of photos with a face and the mean time per photo."""
    detector = FaceDetector()
    images = [cv2.imread(str(photos / f"{v}.jpg"), cv2.IMREAD_GRAYSCALE) for v in ids]
    rows = []
    for second in SECOND_DETECTORS:
        detector.detect(images[0], second)  # loads it
        started = time.perf_counter()
        found = sum(bool(detector.detect(image, second)) for image in images)
        rows.append({"second": second, "found": found / len(images),
                     "ms_per_photo": 1000 * (time.perf_counter() - started) / len(images)})
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--split", default="PublicTest", choices=("PublicTest", "PrivateTest"))
    p.add_argument("--limit", type=int, default=0, help="the first N faces of the split (default: all)")
    p.add_argument("--jobs", type=int, default=1, help="face pipeline processes of sse-predict")
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--work", type=Path, help="keep photos and outputs here (default: a temporary folder)")
    p.add_argument("--compare-crops", metavar="COMMIT", help="also score crop definitions with this commit's models")
    p.add_argument("--detectors", action="store_true", help="also time and count each second detector alone")
    p.add_argument("--cards", action="store_true", help="write the figures into the shipped model cards")
    args = p.parse_args()
    faces, labels = load_split(args.data, args.split)
    if args.limit:
        faces, labels = faces[:args.limit], labels[:args.limit]
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        photos, out = work / "photos", work / "out"
        ids = write_photos(faces, photos, args.split)
        started = time.perf_counter()
        code = predict_main([str(photos), "--out", str(out), "--image-folders", "photos", "--jobs", str(args.jobs),
                             "--no-progress"])
        seconds = time.perf_counter() - started
        if code not in (0, 1):
            raise SystemExit(f"sse-predict failed with exit {code}")
        predicted = read_predictions(out)
        scorers = load_scorers(None)
        rows = []
        for scorer in scorers:
            by_id = predicted.get(scorer.name, {})
            found = [i for i, v in enumerate(ids) if v in by_id]
            pipeline = np.array([by_id[ids[i]].argmax() for i in found], np.int64)
            direct = scorer.probs(faces).argmax(1)
            y = labels[found]
            rows.append({"model": scorer.name, "ensemble": isinstance(scorer, Ensemble), "faces": len(ids),
                         "found": len(found) / len(ids),
                         "pipeline_accuracy": float((pipeline == y).mean()) if found else 0.0,
                         "crops_accuracy_found": float((direct[found] == y).mean()) if found else 0.0,
                         "crops_accuracy_all": float((direct == labels).mean()),
                         "agreement": float((pipeline == direct[found]).mean()) if found else 0.0})
        first = next(iter(predicted.values()), {})
        crops = (compare_crops(args.compare_crops, photos, out, ids, [v for v in ids if v in first], labels, faces)
                 if args.compare_crops else [])
        detectors = detector_recall(photos, ids) if args.detectors else []
    report = {"split": args.split, "faces": len(ids), "seconds": seconds, "machine": cpu_model(), "models": rows,
              "crop_definitions": crops, "compare_commit": args.compare_crops, "detectors": detectors}
    atomic.write_text(RESULTS / f"pipeline_accuracy_{args.split.lower()}.json", json.dumps(report, indent=1) + "\n")
    atomic.write_text(RESULTS / f"pipeline_accuracy_{args.split.lower()}.md", markdown(report))
    print(markdown(report))
    if args.cards:
        for row in rows:
            folder = MODELS_DIR / row["model"]
            if (folder / "README.md").is_file():
                write_card_section(folder / "README.md", card_section(report, row))
    return 0


def markdown(report: dict) -> str:
    lines = [f"## Accuracy through the face pipeline, FER2013 {report['split']} as photos (bench/pipeline_accuracy.py)",
             "", f"{report['faces']} faces of {report['split']}, each enlarged 2.5-4x into a {CANVAS[0]}x{CANVAS[1]} "
             "photo (soft surroundings of its own tones), through `sse-predict` with its defaults (HOG, then "
             "dlib's CNN detector where HOG finds nothing; landmarks; each model's own crop from the photo; "
             f"no test-time augmentation) in {report['seconds']:.0f} s, beside the same faces given as "
             f"48x48 crops. Machine: {report['machine']}.", "",
             "| model | faces found | accuracy through sse-predict (found) | as crops (same faces) | gap | "
             "agreement | as crops (all faces) |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in report["models"]:
        name = f"**{r['model']}**" if r["ensemble"] else r["model"]
        lines.append(f"| {name} | {r['found']:.1%} | {r['pipeline_accuracy']:.2%} | {r['crops_accuracy_found']:.2%} | "
                     f"{100 * (r['pipeline_accuracy'] - r['crops_accuracy_found']):+.2f} | {r['agreement']:.1%} | "
                     f"{r['crops_accuracy_all']:.2%} |")
    if report["crop_definitions"]:
        lines += ["", f"Crop definitions, scored by the ensemble of commit {report['compare_commit'][:7]} (models "
                  "that learned FER2013's own 48x48 pictures, none of these crops) on the found faces, cut at "
                  "the pipeline's landmarks:", "", "| crop | accuracy | agreement with the faces as crops |",
                  "| --- | ---: | ---: |"]
        lines += [f"| {name} | {acc:.2%} | {agree:.1%} |" for name, acc, agree in report["crop_definitions"]]
    if report["detectors"]:
        lines += ["", "Detection on the same photos, HOG (upsample 1) then a second detector where HOG finds "
                  "nothing (`sse-predict --photo-detector`, default mmod):", "",
                  "| second detector | photos with a face | ms per photo |", "| --- | ---: | ---: |"]
        lines += [f"| {d['second']} | {d['found']:.1%} | {d['ms_per_photo']:.0f} |" for d in report["detectors"]]
    return "\n".join(lines) + "\n"


def card_section(report: dict, row: dict) -> str:
    return (f"FER2013 {report['split']} ({report['faces']} faces) as photos through `sse-predict` "
            f"(`python bench/pipeline_accuracy.py --split {report['split']} --cards`): faces found "
            f"{row['found']:.1%}; accuracy on the found faces {row['pipeline_accuracy']:.2%} through the pipeline "
            f"against {row['crops_accuracy_found']:.2%} for the same faces given as crops (agreement "
            f"{row['agreement']:.1%}).")


def write_card_section(card: Path, text: str) -> None:
    """Put ``text`` into the card's pipeline section (one line per split, replaced when rerun)."""
    body = card.read_text()
    split = text.split(" ", 2)[1]
    if CARD_BEGIN in body:
        head, rest = body.split(CARD_BEGIN, 1)
        lines, tail = rest.split(CARD_END, 1)
        kept = [line for line in lines.strip().splitlines() if line and f"FER2013 {split} " not in line]
    else:
        head, tail, kept = body.rstrip() + "\n\n## Through the face pipeline\n\n", "\n", []
    section = "\n\n".join(sorted(kept + [text]))
    atomic.write_text(card, f"{head}{CARD_BEGIN}\n{section}\n{CARD_END}{tail}")


if __name__ == "__main__":
    sys.exit(main())
