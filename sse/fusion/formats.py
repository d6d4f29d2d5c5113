"""Text formats of the EmotiW submission and of the lists that drive fusion.

* prediction file: one line per video in the order of the video list, seven space-separated scores
  in CLASS_NAMES order, written with ``%.5g`` (the format of the 2017 release, byte for byte);
* video list: one video file name per line (e.g. ``000029320.avi``);
* frame list: one line per row of a frame-level feature matrix, ``<frame> <video>``; the last
  whitespace splits, so frame paths may contain spaces; ``#`` comments and blank lines are skipped;
* label file: one line per video, ``<video> <label>``, the label a class name or an index in
  CLASS_NAMES order (``label_order`` maps other datasets' indices).
"""
from __future__ import annotations

import os
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from caffe.atomic import atomic_path
from sse.classes import NUM_CLASSES, class_index, label_mapping
from sse.fusion.errors import FusionError

PREDICTION_FORMAT = "%.5g"


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and os.replace."""
    atomic_write(path, lambda f: f.write(text.encode()))


def atomic_write(path: str | os.PathLike, write) -> None:
    """Call ``write(binary_file)`` on a temporary file beside ``path``, then move it into place."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        write(f)


def _content_lines(path: Path) -> Iterable[tuple[int, str]]:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise FusionError(f"{path}: cannot read: {e.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise FusionError(f"{path}:{line}: not UTF-8 text (byte 0x{raw[e.start]:02x} at offset "
                          f"{e.start}); expected a text file") from None
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            yield number, stripped


def read_predictions(path: str | os.PathLike, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """Scores of a prediction file as a float64 array (videos, num_classes).

    Every line must hold ``num_classes`` numbers; NaN or infinite values are an error naming the line."""
    path = Path(path)
    rows = []
    for number, line in _content_lines(path):
        fields = line.split()
        if len(fields) != num_classes:
            raise FusionError(f"{path}:{number}: expected {num_classes} scores, found {len(fields)}")
        try:
            row = [float(x) for x in fields]
        except ValueError:
            raise FusionError(f"{path}:{number}: not a number in {line!r}") from None
        if not np.all(np.isfinite(row)):
            raise FusionError(f"{path}:{number}: NaN or infinite score in {line!r}")
        rows.append(row)
    if not rows:
        raise FusionError(f"{path}: no predictions")
    return np.array(rows, dtype=np.float64)


def format_predictions(scores: np.ndarray) -> str:
    """Text of a prediction file: one line per row, values ``%.5g``, single spaces, '\\n' endings."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2:
        raise FusionError(f"predictions must be a 2-D array, got shape {scores.shape}")
    if not np.all(np.isfinite(scores)):
        row = int(np.nonzero(~np.isfinite(scores).all(axis=1))[0][0])
        raise FusionError(f"refusing to write NaN or infinite scores (row {row + 1})")
    line = " ".join([PREDICTION_FORMAT] * scores.shape[1]) + "\n"
    return "".join(line % tuple(row) for row in scores)


def write_predictions(path: str | os.PathLike, scores: np.ndarray) -> None:
    """Write a prediction file in the EmotiW 2017 submission format (atomically)."""
    atomic_write_text(path, format_predictions(scores))


def read_video_list(path: str | os.PathLike) -> list[str]:
    """Video names, one per line; a repeated name is an error naming both lines."""
    path = Path(path)
    videos: list[str] = []
    seen: dict[str, int] = {}
    for number, line in _content_lines(path):
        if line in seen:
            raise FusionError(f"{path}:{number}: video {line!r} already listed on line {seen[line]}")
        seen[line] = number
        videos.append(line)
    if not videos:
        raise FusionError(f"{path}: no videos")
    return videos


def video_key(name: str) -> str:
    """Name under which frame lists and label files are matched to the video list: the file
    name without folder and extension ('a/000029320.avi' -> '000029320')."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    stem, dot, _ = base.rpartition(".")
    return stem if dot and stem else base


@dataclass(frozen=True)
class FrameList:
    """Which video each row of a frame-level matrix belongs to, and (from a frames.csv) the row's
    frame index in its source video."""
    frames: tuple[str, ...]
    videos: tuple[str, ...]
    source: str = "<memory>"
    line_numbers: tuple[int, ...] = ()
    indices: tuple[int, ...] | None = None


def read_frame_list(path: str | os.PathLike) -> FrameList:
    """Read ``<frame> <video>`` lines (row i of the features = i-th such line), or the face
    pipeline's ``frames.csv`` (header ``crop,video,...`` with a ``frame`` column of source frame
    indices), whose rows follow its list.txt."""
    path = Path(path)
    lines = list(_content_lines(path))
    if lines and lines[0][1].replace(" ", "").startswith("crop,video"):
        return _read_frames_csv(path, lines)
    frames, videos, numbers = [], [], []
    for number, line in lines:
        parts = line.rsplit(None, 1)
        if len(parts) != 2:
            raise FusionError(f"{path}:{number}: expected '<frame> <video>', got {line!r}")
        frames.append(parts[0])
        videos.append(parts[1])
        numbers.append(number)
    if not frames:
        raise FusionError(f"{path}: no frames")
    return FrameList(tuple(frames), tuple(videos), str(path), tuple(numbers))


def _read_frames_csv(path: Path, lines: list[tuple[int, str]]) -> FrameList:
    import csv
    header = [h.strip() for h in next(csv.reader([lines[0][1]]))]
    column = {name: i for i, name in enumerate(header)}
    frames, videos, numbers, indices = [], [], [], []
    for number, parts in zip((n for n, _ in lines[1:]), csv.reader(line for _, line in lines[1:])):
        if len(parts) != len(header):
            raise FusionError(f"{path}:{number}: expected {len(header)} fields ({','.join(header)}), "
                              f"got {','.join(parts)!r}")
        frames.append(parts[column["crop"]])
        videos.append(parts[column["video"]])
        numbers.append(number)
        if "frame" in column:
            try:
                indices.append(int(parts[column["frame"]]))
            except ValueError:
                raise FusionError(f"{path}:{number}: frame index {parts[column['frame']]!r} is not an "
                                  f"integer") from None
    if not frames:
        raise FusionError(f"{path}: no frames")
    return FrameList(tuple(frames), tuple(videos), str(path), tuple(numbers),
                     tuple(indices) if "frame" in column else None)


def read_labels(path: str | os.PathLike, videos: Sequence[str] | None = None,
                label_order: str | Sequence[str] = "sse") -> tuple[list[str], np.ndarray]:
    """Read ``<video> <label>`` lines; return (video names, labels in CLASS_NAMES indices).

    With ``videos`` the labels are returned in that order, and a video without a label, or a label
    for a video not in ``videos``, is an error naming it."""
    path = Path(path)
    mapping = label_mapping(label_order)
    names, labels, where = [], [], {}
    for number, line in _content_lines(path):
        parts = line.rsplit(None, 1)
        if len(parts) != 2:
            raise FusionError(f"{path}:{number}: expected '<video> <label>', got {line!r}")
        name, label = parts
        key = video_key(name)
        if key in where:
            raise FusionError(f"{path}:{number}: video {name!r} already labelled on line {where[key]}")
        where[key] = number
        names.append(name)
        labels.append(_parse_label(label, mapping, f"{path}:{number}"))
    if not names:
        raise FusionError(f"{path}: no labels")
    if videos is None:
        return names, np.array(labels, dtype=np.int64)
    by_key = dict(zip((video_key(n) for n in names), labels))
    wanted = {video_key(v) for v in videos}
    extra = [n for n in names if video_key(n) not in wanted]
    if extra:
        raise FusionError(f"{path}:{where[video_key(extra[0])]}: video {extra[0]!r} is not in the video list")
    missing = [v for v in videos if video_key(v) not in by_key]
    if missing:
        raise FusionError(f"{path}: no label for video {missing[0]!r} ({len(missing)} videos unlabelled)")
    return list(videos), np.array([by_key[video_key(v)] for v in videos], dtype=np.int64)


def _parse_label(text: str, mapping: np.ndarray, where: str) -> int:
    if text.lstrip("-").isdigit():
        index = int(text)
        if not 0 <= index < len(mapping):
            raise FusionError(f"{where}: label {index} out of range 0..{len(mapping) - 1}")
        return int(mapping[index])
    try:
        return class_index(text)
    except ValueError as e:
        raise FusionError(f"{where}: {e}") from None


def read_matrix(path: str | os.PathLike, var: str | None = None) -> np.ndarray:
    """A 2-D matrix from .mat (v5 via SciPy, v7.3 via h5py), .npy, or a text prediction file.

    ``var`` names the MATLAB variable; by default the only variable in the file (or 'feats')."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            return _two_d(np.load(path, allow_pickle=False), path)
        except (OSError, ValueError) as e:
            raise FusionError(f"{path}: cannot read .npy: {e}") from None
    if suffix != ".mat":
        return read_predictions(path)
    with open(path, "rb") as f:
        head = f.read(128)
    if head[:10] == b"MATLAB 7.3" or head[:8] == b"\x89HDF\r\n\x1a\n":
        import h5py
        try:
            with h5py.File(path, "r") as f:
                names = [k for k in f.keys() if not k.startswith("#")]
                name = _pick_variable(path, names, var)
                return _two_d(np.asarray(f[name]).T, path)
        except (OSError, KeyError) as e:
            raise FusionError(f"{path}: cannot read .mat v7.3 (HDF5), damaged or cut short: {e}") from None
    import scipy.io
    try:
        contents = scipy.io.loadmat(path)
    except (ValueError, TypeError, NotImplementedError, IndexError, OSError, zlib.error,
            scipy.io.matlab.MatReadError) as e:
        raise FusionError(f"{path}: cannot read .mat (damaged or cut short?): "
                          f"{e or type(e).__name__}") from None
    names = [k for k in contents if not k.startswith("__")]
    return _two_d(contents[_pick_variable(path, names, var)], path)


def _pick_variable(path: Path, names: list[str], var: str | None) -> str:
    if var is not None:
        if var not in names:
            raise FusionError(f"{path}: no variable {var!r} (variables: {', '.join(names) or 'none'})")
        return var
    if len(names) == 1:
        return names[0]
    if "feats" in names:
        return "feats"
    raise FusionError(f"{path}: several variables ({', '.join(names)}), choose one with --var")


def _two_d(array: np.ndarray, path: Path) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.number):
        raise FusionError(f"{path}: expected a numeric 2-D matrix, got {array.dtype} of shape {array.shape}")
    return array.astype(np.float64)
