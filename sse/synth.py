"""Procedurally drawn face clips with the seven expressions: the embedded default data set.

Nothing is downloaded: every clip is drawn with OpenCV from a random identity (head shape, skin
tone, feature positions and sizes), an expression (brows, eyelids, mouth shape and opening, nose
wrinkles) that ramps from near-neutral to its apex over the clip, head motion (rotation,
translation, scale), a lighting gradient, blur and sensor noise. The faces are already centred,
as the face pipeline's aligned 128x128 crops are, so the data can go straight to
``convert_imageset``. The expressions follow the facial actions that characterise each emotion
(e.g. Happy: lip corners up, cheeks raised; Surprise: brows up, eyes wide, jaw dropped), so a
model has to look at several regions at once, and the onset frames of a clip are ambiguous.

Layout written by :func:`make_dataset` under ``root``::

    frames/<split>/<video>/<k>.png   grayscale 128x128 frames
    <split>.txt                      "frames/<split>/<video>/<k>.png <label>" (ImageData / convert_imageset)
    <split>_frames.txt               "<frame path> <video>" (frame -> video map for sse.fusion)
    <split>_videos.txt               "<video> <label>" (video labels for evaluation)
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from caffe import atomic
from sse.classes import CLASS_NAMES

SIZE = 128

# Expression parameters at the apex, as offsets from neutral:
# brow_raise, brow_tilt (inner end up > 0), eye_open, smile (lip-corner lift), mouth_open,
# mouth_width, wrinkle (nose), asym (one lip corner only)
_APEX = {
    "Angry":    dict(brow_raise=-4.0, brow_tilt=-6.0, eye_open=-1.0, smile=-3.0, mouth_open=0.0,
                     mouth_width=-5.0, wrinkle=0.3, asym=0.0),
    "Disgust":  dict(brow_raise=-2.0, brow_tilt=-2.0, eye_open=-2.0, smile=-2.0, mouth_open=1.5,
                     mouth_width=-2.0, wrinkle=1.0, asym=5.0),
    "Fear":     dict(brow_raise=5.0, brow_tilt=4.0, eye_open=3.0, smile=-2.0, mouth_open=5.0,
                     mouth_width=5.0, wrinkle=0.0, asym=0.0),
    "Happy":    dict(brow_raise=1.0, brow_tilt=0.0, eye_open=-1.5, smile=8.0, mouth_open=2.5,
                     mouth_width=7.0, wrinkle=0.0, asym=0.0),
    "Neutral":  dict(brow_raise=0.0, brow_tilt=0.0, eye_open=0.0, smile=0.0, mouth_open=0.0,
                     mouth_width=0.0, wrinkle=0.0, asym=0.0),
    "Sad":      dict(brow_raise=1.0, brow_tilt=5.0, eye_open=-1.5, smile=-6.0, mouth_open=0.0,
                     mouth_width=-2.0, wrinkle=0.0, asym=0.0),
    "Surprise": dict(brow_raise=8.0, brow_tilt=0.0, eye_open=3.5, smile=0.0, mouth_open=10.0,
                     mouth_width=-6.0, wrinkle=0.0, asym=0.0),
}


@dataclass
class Identity:
    """What stays fixed through one person's clip."""

    head_w: float
    head_h: float
    skin: float
    hair: float
    eye_dx: float
    eye_y: float
    eye_w: float
    eye_h: float
    brow_gap: float
    mouth_y: float
    mouth_w: float
    background: float

    @classmethod
    def random(cls, rng: np.random.Generator) -> "Identity":
        return cls(head_w=rng.uniform(38, 46), head_h=rng.uniform(48, 56), skin=rng.uniform(120, 200),
                   hair=rng.uniform(20, 90), eye_dx=rng.uniform(14, 18), eye_y=rng.uniform(-14, -8),
                   eye_w=rng.uniform(6, 8), eye_h=rng.uniform(3.5, 5), brow_gap=rng.uniform(7, 10),
                   mouth_y=rng.uniform(20, 26), mouth_w=rng.uniform(18, 24),
                   background=rng.uniform(30, 230))


def _expression(label: str, intensity: float, rng: np.random.Generator) -> dict[str, float]:
    """Apex offsets scaled by intensity, with per-frame jitter of each action."""
    apex = _APEX[label]
    jitter = {"wrinkle": 0.1, "asym": 0.4}
    return {k: v * intensity + rng.normal(0, jitter.get(k, 0.6)) for k, v in apex.items()}


def _draw_face(ident: Identity, expr: dict[str, float], rng: np.random.Generator) -> np.ndarray:
    """One frontal face, centred, before motion and lighting (float32 gray)."""
    img = np.full((SIZE, SIZE), ident.background, np.float32)
    cx, cy = SIZE / 2, SIZE / 2 + 4
    shade = lambda v: float(np.clip(v, 0, 255))  # noqa: E731
    cv2.ellipse(img, (int(cx), int(cy - ident.head_h * 0.55)), (int(ident.head_w + 3), int(ident.head_h * 0.6)),
                0, 180, 360, shade(ident.hair), -1, cv2.LINE_AA)
    cv2.ellipse(img, (int(cx), int(cy)), (int(ident.head_w), int(ident.head_h)), 0, 0, 360,
                shade(ident.skin), -1, cv2.LINE_AA)
    dark = shade(ident.skin * 0.25)
    eye_open = max(ident.eye_h + expr["eye_open"], 0.8)
    for side in (-1, 1):
        ex, ey = cx + side * ident.eye_dx, cy + ident.eye_y
        cv2.ellipse(img, (int(ex), int(ey)), (int(ident.eye_w), int(round(eye_open))), 0, 0, 360,
                    shade(235), -1, cv2.LINE_AA)
        cv2.circle(img, (int(ex), int(ey)), max(int(min(eye_open, 3.5)), 1), dark, -1, cv2.LINE_AA)
        by = ey - ident.brow_gap - expr["brow_raise"] - max(expr["eye_open"], 0) * 0.5
        inner = (ex - side * ident.eye_w, by - expr["brow_tilt"])
        outer = (ex + side * (ident.eye_w + 3), by + expr["brow_tilt"] * 0.3)
        cv2.line(img, (int(inner[0]), int(inner[1])), (int(outer[0]), int(outer[1])), dark, 3, cv2.LINE_AA)
    nose_top, nose_bot = cy + ident.eye_y + 6, cy + ident.mouth_y * 0.55
    cv2.line(img, (int(cx), int(nose_top)), (int(cx - 3), int(nose_bot)), shade(ident.skin * 0.7), 2, cv2.LINE_AA)
    cv2.line(img, (int(cx - 5), int(nose_bot)), (int(cx + 4), int(nose_bot)), shade(ident.skin * 0.6), 2, cv2.LINE_AA)
    if expr["wrinkle"] > 0.4:
        for k in range(3):
            y = int(nose_top + 2 + 3 * k)
            cv2.line(img, (int(cx - 6), y), (int(cx + 6), y + 1), shade(ident.skin * 0.6), 1, cv2.LINE_AA)
    _draw_mouth(img, cx, cy + ident.mouth_y, ident.mouth_w + expr["mouth_width"], expr, dark)
    if expr["smile"] > 4:
        for side in (-1, 1):
            cv2.ellipse(img, (int(cx + side * 16), int(cy + 8)), (5, 3), 0, 0, 360,
                        shade(ident.skin * 1.12), -1, cv2.LINE_AA)
    return img


def _draw_mouth(img: np.ndarray, mx: float, my: float, width: float, expr: dict[str, float],
                color: float) -> None:
    half = max(width, 8) / 2
    xs = np.linspace(-half, half, 21)
    t = xs / half
    lift = expr["smile"] * t ** 2 + expr["asym"] * np.clip(t, 0, None)
    upper = np.stack([mx + xs, my - lift - expr["mouth_open"] * 0.25 * (1 - t ** 2)], 1)
    lower = np.stack([mx + xs, my - lift + expr["mouth_open"] * (1 - t ** 2)], 1)
    if expr["mouth_open"] > 1.5:
        poly = np.concatenate([upper, lower[::-1]]).astype(np.int32)
        cv2.fillPoly(img, [poly], color * 0.6, cv2.LINE_AA)
    cv2.polylines(img, [upper.astype(np.int32)], False, color, 2, cv2.LINE_AA)
    if expr["mouth_open"] > 1.5:
        cv2.polylines(img, [lower.astype(np.int32)], False, color, 2, cv2.LINE_AA)


def _photometric(face: np.ndarray, angle: float, shift: tuple[float, float], scale: float,
                 light: tuple[float, float, float], blur: float, noise: float,
                 rng: np.random.Generator) -> np.ndarray:
    m = cv2.getRotationMatrix2D((SIZE / 2, SIZE / 2), angle, scale)
    m[:, 2] += shift
    img = cv2.warpAffine(face, m, (SIZE, SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32) / SIZE - 0.5
    gain = light[0] + light[1] * xx + light[2] * yy
    img = img * gain
    if blur > 0.3:
        img = cv2.GaussianBlur(img, (0, 0), blur)
    img = img + rng.normal(0, noise, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def render_clip(label: int, n_frames: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Frames of one clip of class ``label`` (index in CLASS_NAMES): onset to apex with motion."""
    name = CLASS_NAMES[label]
    ident = Identity.random(rng)
    start, end = rng.uniform(0.0, 0.4), rng.uniform(0.7, 1.1)
    angle0, angle1 = rng.normal(0, 6, 2)
    shift0, shift1 = rng.normal(0, 3, 2), rng.normal(0, 3, 2)
    scale0 = rng.uniform(0.9, 1.1)
    light = (rng.uniform(0.75, 1.2), rng.normal(0, 0.35), rng.normal(0, 0.35))
    blur, noise = rng.uniform(0, 1.4), rng.uniform(2, 9)
    frames = []
    for k in range(n_frames):
        a = k / max(n_frames - 1, 1)
        intensity = start + (end - start) * a
        face = _draw_face(ident, _expression(name, intensity, rng), rng)
        frames.append(_photometric(face, angle0 + (angle1 - angle0) * a,
                                   tuple(shift0 + (shift1 - shift0) * a), scale0 * (1 + 0.03 * np.sin(3 * a)),
                                   light, blur, noise, rng))
    return frames


def _write_png(path: Path, img: np.ndarray) -> None:
    ok, buf = cv2.imencode(".png", img)
    if not ok:
        raise OSError(f"cannot encode {path}")
    atomic.write_bytes(path, buf.tobytes())


def make_dataset(root: str | os.PathLike, splits: dict[str, tuple[int, int]],
                 seed: int = 2017, size: int = SIZE) -> dict[str, int]:
    """Render clips for each split (``{"train": (60, 3), "val": (4, 8)}``: videos per class and
    frames per video) and write frames and list files under ``root``; frames are drawn at 128x128
    and stored at ``size`` x ``size``. Returns the number of frames per split."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    counts = {}
    for split, (per_class, frames_per_video) in splits.items():
        items, frame_lines, video_lines = [], [], []
        for label in range(len(CLASS_NAMES)):
            for v in range(per_class):
                video = f"{split}_{CLASS_NAMES[label].lower()}_{v:03d}"
                folder = root / "frames" / split / video
                folder.mkdir(parents=True, exist_ok=True)
                for k, frame in enumerate(render_clip(label, frames_per_video, rng)):
                    if size != SIZE:
                        frame = cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA)
                    rel = f"frames/{split}/{video}/{k:03d}.png"
                    _write_png(root / rel, frame)
                    items.append((rel, label, video))
                video_lines.append(f"{video} {label}")
        order = rng.permutation(len(items)) if split == "train" else np.arange(len(items))
        atomic.write_text(root / f"{split}.txt", "".join(f"{items[i][0]} {items[i][1]}\n" for i in order))
        frame_lines = [f"{items[i][0]} {items[i][2]}\n" for i in order]
        atomic.write_text(root / f"{split}_frames.txt", "".join(frame_lines))
        atomic.write_text(root / f"{split}_videos.txt", "".join(line + "\n" for line in video_lines))
        counts[split] = len(items)
    return counts
