"""From command-line inputs to the list of videos to process, each with its output id and label.

An input is a video file, a single image, an image folder or a tree (e.g. AFEW's Train/Angry/*.avi).
In a tree every video file is one video. A folder that directly holds images is one image sequence
when its images are the frames of a clip (decode.folder_reading: numbered names, one size, and
neighbouring images alike, not shot cuts from one another), and otherwise a set of photos, each
photo its own "video" of one frame (no tracking or interpolation across photos); `image_folders`
('sequence' or 'photos') overrides that guess. Every job says how its input was read
(`VideoJob.reading`, copied into the manifest and the summary). A video's id (its
output folder under --out) is its path relative to the input's parent without the extension, e.g.
`Train/Angry/000123` or `holiday/IMG_0042` for a photo; a file given directly is just its stem.

Labels (index in sse.classes.CLASS_NAMES: Angry, Disgust, Fear, Happy, Neutral, Sad, Surprise) come
from the nearest folder of the path named after a class (case-insensitive, 'Anger'/'happiness'-style
spellings accepted), or from a CSV (`--label-csv`) of `video,label` lines, video being the id, the
file name or its stem, label a class name or index; the CSV wins. Unlabelled videos get None.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

from sse.classes import CLASS_NAMES, class_index

from .decode import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, folder_reading, list_images
from .errors import FacesError, InputNotFoundError, LabelError


@dataclass(frozen=True)
class VideoJob:
    """One video (or image sequence) to process."""

    video_id: str
    path: Path
    label: int | None
    reading: str = ""  # how the input was read: a video, a photo, an image folder as frames or as photos, and why


def label_from_path(path: Path) -> int | None:
    """Class index of the nearest enclosing folder named after a class, else None."""
    for part in reversed(path.parent.parts):
        try:
            return class_index(part)
        except ValueError:
            continue
    return None


def read_label_csv(path: Path) -> dict[str, int]:
    """Map video key -> class index from a `video,label` CSV (an optional header line is skipped)."""
    labels: dict[str, int] = {}
    with open(path, newline="", encoding="utf-8") as handle:
        for line_no, row in enumerate(csv.reader(handle), start=1):
            if not row or row[0].startswith("#"):
                continue
            if len(row) < 2:
                raise LabelError(f"{path}:{line_no}: expected 'video,label', got {','.join(row)!r}")
            key, value = row[0].strip(), row[1].strip()
            try:
                labels[key] = _parse_label(value)
            except LabelError as exc:
                if line_no == 1:
                    continue  # header
                raise LabelError(f"{path}:{line_no}: {exc}") from None
    return labels


def _parse_label(value: str) -> int:
    if value.lstrip("-").isdigit():
        index = int(value)
        if not 0 <= index < len(CLASS_NAMES):
            raise LabelError(f"label index {index} out of range 0..{len(CLASS_NAMES) - 1}")
        return index
    try:
        return class_index(value)
    except ValueError as exc:
        raise LabelError(str(exc)) from None


IMAGE_FOLDER_MODES = ("auto", "sequence", "photos")


def discover(inputs: list[Path], label_csv: Path | None = None, image_folders: str = "auto") -> list[VideoJob]:
    """All videos under the inputs, in a stable order; raises InputNotFoundError for a missing path.
    `image_folders`: how a folder of images is read ('auto', 'sequence' or 'photos', see above)."""
    if image_folders not in IMAGE_FOLDER_MODES:
        raise ValueError(f"image_folders must be one of {IMAGE_FOLDER_MODES}, got {image_folders!r}")
    csv_labels = read_label_csv(label_csv) if label_csv else {}
    found: list[tuple[str, Path, str]] = []
    for raw in inputs:
        path = Path(raw)
        if not path.exists():
            raise InputNotFoundError(f"input not found: {path}")
        if path.is_file():
            if path.suffix.lower() not in VIDEO_EXTENSIONS | IMAGE_EXTENSIONS:
                raise InputNotFoundError(f"{path}: not a video or image (extension {path.suffix!r})")
            found.append((path.stem, path, "photo" if path.suffix.lower() in IMAGE_EXTENSIONS else "video"))
            continue
        before = len(found)
        found.extend(_walk(path, image_folders))
        if len(found) == before:
            raise InputNotFoundError(f"{path}: no video or image found in this folder")
    jobs, seen = [], {}
    for video_id, path, reading in found:
        if video_id in seen:
            raise FacesError(f"two inputs map to the same output folder {video_id!r}: {seen[video_id]} and {path}")
        seen[video_id] = path
        label = label_from_path(Path(os.path.abspath(path)))
        for key in (video_id, path.name, path.stem):
            if key in csv_labels:
                label = csv_labels[key]
                break
        jobs.append(VideoJob(video_id, path, label, reading))
    return jobs


def _walk(root: Path, image_folders: str) -> list[tuple[str, Path, str]]:
    """(id, path, reading) of every video, sequence or photo under ``root``; ids are paths relative
    to root's parent, taken as written (a symlinked clip keeps its name in the tree)."""
    base = Path(os.path.abspath(root)).parent
    found = []
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        folder_path = Path(folder)
        videos = sorted(f for f in files if Path(f).suffix.lower() in VIDEO_EXTENSIONS)
        for name in videos:
            path = folder_path / name
            found.append((Path(os.path.abspath(path)).relative_to(base).with_suffix("").as_posix(), path, "video"))
        if videos or not any(Path(f).suffix.lower() in IMAGE_EXTENSIONS for f in files):
            continue
        folder_id = Path(os.path.abspath(folder_path)).relative_to(base).as_posix()
        images = list_images(folder_path)
        if image_folders == "auto":
            sequence, why = folder_reading(images)
        else:
            sequence, why = image_folders == "sequence", f"{image_folders}: as --image-folders says"
        if sequence:
            found.append((folder_id, folder_path, f"image folder {folder_id} read as frames of a clip ({why})"))
        else:
            why = why.removeprefix("photos: ")
            reading = f"image folder {folder_id} read as {len(images)} photos ({why})"
            found.extend((f"{folder_id}/{image.stem}", image, reading) for image in images)
    return found
