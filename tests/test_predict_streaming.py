"""sse-predict streams a video: chunks of faces cut from one decode of the source, scored, their CSV
rows spooled; the outputs equal those of the whole video scored at once, and memory does not hold
every crop (issue 21)."""
from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import cv2
import numpy as np
import pytest

from sse.classes import CLASS_NAMES
from sse.faces.crop import CropSpec, cut_crop
from sse.faces.jsonstream import write_object
from sse.faces.video import crop_name, read_manifest
from sse.fusion.evaluate import save_timeline_png
from sse.predict.video import CHUNK_FACES, PREDICTIONS, SUMMARY, chunks, predict_video, read_faces
from sse.shipped import FaceCrops

SPEC = CropSpec(size=32, eye_distance=0.36, eye_height=0.38, anchors="landmarks", gray=True)
PIPELINE = CropSpec(size=40)  # the "face pipeline's" crop of the synthetic manifests


class PixelScorer:
    """A model stand-in whose probabilities of a face depend on that face alone (numpy, float32),
    so any chunking must give the same numbers bit for bit."""

    def __init__(self, name: str, spec: CropSpec | None, seed: int) -> None:
        self.name, self.spec = name, spec
        self.weights = np.random.default_rng(seed).normal(size=(4, len(CLASS_NAMES))).astype(np.float32)
        self.faces_scored = 0

    def crop_specs(self):
        return [self.spec]

    def probs(self, faces: np.ndarray) -> np.ndarray:
        faces = np.asarray(faces, np.float32).reshape(len(faces), faces.shape[1], faces.shape[2], -1).mean(axis=3)
        h = faces.shape[1] // 2
        quads = np.stack([faces[:, :h, :h].mean((1, 2)), faces[:, :h, h:].mean((1, 2)),
                          faces[:, h:, :h].mean((1, 2)), faces[:, h:, h:].mean((1, 2))], axis=1) / np.float32(64)
        logits = quads @ self.weights
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)

    def score(self, faces: FaceCrops, tta: str = "none") -> np.ndarray:
        crops = faces.crops(self.spec)
        self.faces_scored = max(self.faces_scored, len(crops))
        return self.probs(crops) if len(crops) else np.zeros((0, len(CLASS_NAMES)), np.float32)


def _frame(k: int, size: int = 96) -> np.ndarray:
    rng = np.random.default_rng(k)
    image = cv2.GaussianBlur(rng.integers(0, 256, (size, size, 3)).astype(np.uint8), (0, 0), 2)
    cv2.circle(image, (30 + k % 30, 40), 12, (255 - k % 200, 80, 40 + k % 150), -1)
    return image


def make_video(tmp: Path, frames: int, people: int = 2, gaps: bool = True,
               pipeline: CropSpec = PIPELINE) -> tuple[Path, Path, dict]:
    """A synthetic clip (mp4v) and the face pipeline's folder of it: a manifest in the pipeline's
    layout (faces='all'), person p's face in frame k at landmarks shifted with k, crop files."""
    video = tmp / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (96, 96))
    images = []
    for k in range(frames):
        image = _frame(k)
        writer.write(image)
        images.append(image)
    writer.release()
    capture = cv2.VideoCapture(str(video))  # the crops are cut from what the decoder gives back
    decoded = []
    while True:
        ok, image = capture.read()
        if not ok:
            break
        decoded.append(image)
    capture.release()
    assert len(decoded) == frames
    faces = tmp / "faces"
    folder = faces / "clip"
    template = CropSpec(size=64).template()
    entries = []
    for person in range(1, people + 1):
        seen = [k for k in range(frames) if not gaps or (k * person) % 7 != 3]
        for k in range(seen[0], seen[-1] + 1):
            if k not in seen:
                entries.append({"index": k, "person": person, "status": "none", "box": None, "landmarks": None,
                                "pose": None, "crop": None})
                continue
            points = template * (0.8 + 0.1 * person) + np.array([8.0 + (k % 9), 6.0 + 3 * person])
            points = np.round(points, 1)
            crop = cut_crop(decoded[k], points, pipeline)
            name = crop_name(k, person)
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(folder / name), crop)
            box = [float(points[:, 0].min()), float(points[:, 1].min()), float(points[:, 0].max()), float(points[:, 1].max())]
            entries.append({"index": k, "person": person, "status": "detected" if k % 5 == 0 else "tracked",
                            "box": [round(v, 1) for v in box], "landmarks": points.tolist(), "pose": None,
                            "crop": name})
    manifest = {"format": "sse.faces.manifest/2", "video": "clip", "source": str(video),
                "source_key": {"path": str(video)}, "status": "ok", "settings": {"stride": 1, "faces": "all"},
                "fps": 25.0, "frames_sampled": frames, "people": [{"id": p} for p in range(1, people + 1)],
                "frames": entries, "complete": True}
    write_object(folder / "manifest.json", manifest, "frames")
    return video, faces, manifest


def _scorers():
    return [PixelScorer("own_crop", SPEC, 1), PixelScorer("pipeline_crop", None, 2)]


def _outputs(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.mark.parametrize("chunk", [1, 3, 17])
def test_small_chunks_write_the_files_one_chunk_writes(tmp_path, chunk):
    _, faces, _ = make_video(tmp_path, 40)
    manifest = read_manifest(faces / "clip", frames=False)
    assert "frames" not in manifest
    scorers = _scorers()
    whole = predict_video(manifest, faces, tmp_path / "whole", scorers, scorers[0], "none", {}, True, chunk=10**6)
    crops = sum(1 for f in json.loads((faces / "clip" / "manifest.json").read_text())["frames"] if f["crop"])
    assert scorers[0].faces_scored == crops  # one chunk: every face at once
    scorers = _scorers()
    parts = predict_video(manifest, faces, tmp_path / "parts", scorers, scorers[0], "none", {}, True, chunk=chunk)
    assert scorers[0].faces_scored <= max(chunk, 2)  # a chunk is whole frames: at most one frame over
    assert parts == whole
    a, b = _outputs(tmp_path / "whole"), _outputs(tmp_path / "parts")
    assert sorted(a) == sorted(b) == ["annotated.mp4", "contact_sheet.png", PREDICTIONS, SUMMARY,
                                      "timeline_p1.png", "timeline_p2.png"]
    for name in a:
        assert a[name] == b[name], name


def test_the_streamed_outputs_are_those_of_every_crop_scored_at_once(tmp_path):
    """The rows and the per-person means as the code before streaming computed them: every crop
    of the manifest listed in (person, frame) order, scored in one call, the means numpy's."""
    _, faces, manifest = make_video(tmp_path, 30)
    scorers = _scorers()
    summary = predict_video(read_manifest(faces / "clip", frames=False), faces, tmp_path / "out", scorers,
                            scorers[0], "none", {}, False, chunk=4)
    entries = sorted((f for f in manifest["frames"] if f.get("crop")), key=lambda f: (f["person"], f["index"]))
    source = []
    capture = cv2.VideoCapture(manifest["source"])
    while True:
        ok, image = capture.read()
        if not ok:
            break
        source.append(image)
    own = np.stack([cut_crop(source[e["index"]], np.array(e["landmarks"]), SPEC) for e in entries])
    pipeline = np.stack([cv2.imread(str(faces / "clip" / e["crop"]), cv2.IMREAD_UNCHANGED) for e in entries])
    probs = {"own_crop": scorers[0].probs(own), "pipeline_crop": scorers[1].probs(pipeline)}
    lines = (tmp_path / "out" / PREDICTIONS).read_text().splitlines()
    assert len(lines) == 1 + 2 * len(entries)
    k = 1
    for name, p in probs.items():
        for e, row in zip(entries, p):
            fields = lines[k].split(",")
            assert fields[2:4] == [str(e["person"]), str(e["index"])] and fields[10] == name
            assert fields[11:18] == [f"{v:.5f}" for v in row]
            k += 1
    persons = np.array([e["person"] for e in entries])
    for person in summary["people"]:
        for name, p in probs.items():
            mean = p[persons == person["person"]].mean(axis=0)
            assert person["models"][name]["mean"] == {c: round(float(v), 5) for c, v in zip(CLASS_NAMES, mean)}


def test_chunks_are_whole_frames_in_frame_order(tmp_path):
    _, faces, manifest = make_video(tmp_path, 25, people=3)
    index = read_faces(manifest, faces)
    try:
        parts = chunks(index, 4)
        flat = np.concatenate(parts)
        assert sorted(flat.tolist()) == list(range(len(index.frames)))
        for a, b in zip(parts, parts[1:]):
            assert index.frames[a].max() < index.frames[b].min()
        for part in parts:
            assert len(part) <= 4 or len(set(index.frames[part].tolist())) == 1
            assert list(part) == sorted(part)  # (person, frame) order inside a chunk
        assert len(chunks(index, CHUNK_FACES)) == 1
        assert index.landmarks(np.array([0])).shape == (1, 68, 2)
    finally:
        index.close()


def test_a_long_video_is_scored_without_holding_every_crop(tmp_path):
    """2,400 faces: holding every 64x64x3 crop of the pipeline and every 32x32 crop of the model
    (the code before streaming, which also stacked a second copy of each) takes 64 MB; the streamed
    run, chunks of 128 faces, stays far below (what it holds: a window of the manifest's text, one
    chunk's crops, a few numbers per face, the sheet's tiles, the timelines' plots)."""
    frames = 1200
    _, faces, _ = make_video(tmp_path, frames, gaps=False, pipeline=CropSpec(size=64))
    manifest = read_manifest(faces / "clip", frames=False)
    faces_count = 2 * frames
    held_before = faces_count * (64 * 64 * 3 + 32 * 32) * 2
    save_timeline_png(np.full((3, 7), 1 / 7, np.float32), tmp_path / "warm.png")  # matplotlib's first use
    scorers = _scorers()
    tracemalloc.start()
    try:
        predict_video(manifest, faces, tmp_path / "out", scorers, scorers[0], "none", {}, False, chunk=128)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert scorers[0].faces_scored <= 128
    assert len((tmp_path / "out" / PREDICTIONS).read_text().splitlines()) == 1 + 2 * faces_count
    assert peak < held_before / 3, f"peak {peak / 1e6:.1f} MB"
