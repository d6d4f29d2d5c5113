"""Frame decoding: video files through OpenCV (PyAV when OpenCV cannot open them), image folders.

Every reader yields `Frame(index, image)` with `index` the frame's position in the whole stream (so
with a stride of 3 the indices are 0, 3, 6, ...) and `image` a BGR uint8 array, already rotated
upright from the container's rotation metadata (OpenCV's CAP_PROP_ORIENTATION_AUTO; PyAV's
display matrix) or from the EXIF orientation of photos. An image that cannot be decoded inside a
folder gives `image=None` with the file and the reason (`source`, `error`), so the frame is recorded
and named, not silently dropped. `MediaReader.fps` is the stream's frame rate (None for images).

A video that cannot be opened, yields no frame, or stops well before the frame count its container
declares raises `UnreadableMediaError` (the last one only once the stream is exhausted, through
`MediaReader.check_complete`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
from PIL import Image

from .contact import pick_evenly
from .errors import UnreadableMediaError
from .shots import frame_difference, thumbnail

VIDEO_EXTENSIONS = frozenset(
    {".avi", ".mp4", ".mkv", ".mov", ".webm", ".mpg", ".mpeg", ".m4v", ".wmv", ".flv", ".gif"}
)
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})

# A stream that ends this much before its declared length is treated as truncated.
_TRUNCATION_TOLERANCE = 0.05


@dataclass
class Frame:
    """One decoded frame: its index in the stream and its BGR pixels (None if undecodable, then
    `source` names the file and `error` says why)."""

    index: int
    image: np.ndarray | None
    source: str = ""
    error: str = ""


def natural_key(name: str) -> list:
    """Sort key that orders 'frame2' before 'frame10'."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside `folder`, in natural order."""
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
    return sorted(files, key=lambda p: natural_key(p.name))


_NUMBERED = re.compile(r"^(.*?)(\d+)(\D*)$")


def is_frame_sequence(files: list[Path]) -> bool:
    """Whether image files are the frames of one clip rather than a set of photos (folder_reading)."""
    return folder_reading(files)[0]


# A folder of numbered same-size images is a clip's frames unless more than this fraction of the
# sampled neighbouring pairs differ as a shot cut does (shots.frame_difference >= CUT_DIFFERENCE).
SAMPLED_PAIRS = 8
CUT_DIFFERENCE = 0.08
PHOTO_CUT_FRACTION = 0.5


def folder_reading(files: list[Path]) -> tuple[bool, str]:
    """(is a clip's frames, why) for the image files of one folder.

    Frames of one clip are named `<prefix><number><suffix>` with one prefix and suffix
    (frame_0001.png, ...), are all of one size (read from the headers; unreadable files are not
    counted), and look alike from one to the next: of up to SAMPLED_PAIRS neighbouring pairs spread
    over the folder, at most half differ as at a shot cut (shots.frame_difference on 64x36 gray
    thumbnails, >= CUT_DIFFERENCE). A camera's IMG_0001.JPG ... IMG_0600.JPG passes the first two
    tests but not the third. Anything else is a set of photos, each processed on its own."""
    if not files:
        return False, "no image"
    shapes = set()
    for path in files:
        match = _NUMBERED.match(path.stem)
        if match is None:
            return False, f"photos: {path.name} is not named <prefix><number>"
        shapes.add((match.group(1).lower(), match.group(3).lower(), path.suffix.lower()))
    if len(shapes) != 1:
        return False, "photos: the numbered names do not share one prefix and extension"
    if len({size for size in map(_image_size, files) if size is not None}) > 1:
        return False, "photos: the images are not all of one size"
    if len(files) == 1:
        return True, "a single numbered image"
    cuts, compared = _neighbour_cuts(files)
    if compared and cuts > PHOTO_CUT_FRACTION * compared:
        return False, (f"photos: numbered names of one size, but {cuts} of {compared} sampled neighbouring pairs"
                       " differ as at a shot cut")
    return True, (f"numbered names of one size; {cuts} of {compared} sampled neighbouring pairs differ as at a"
                  " shot cut")


def _neighbour_cuts(files: list[Path]) -> tuple[int, int]:
    """(pairs that differ as at a shot cut, pairs compared) over up to SAMPLED_PAIRS neighbouring
    pairs spread evenly over the files (pairs with an unreadable image are not compared)."""
    cuts = compared = 0
    for start in pick_evenly(len(files) - 1, SAMPLED_PAIRS):
        thumbs = [_thumbnail(files[start + k]) for k in (0, 1)]
        if thumbs[0] is None or thumbs[1] is None:
            continue
        compared += 1
        cuts += frame_difference(*thumbs) >= CUT_DIFFERENCE
    return cuts, compared


def _thumbnail(path: Path) -> np.ndarray | None:
    """The shot-cut thumbnail of an image file (JPEGs decoded at 1/4 scale), None if unreadable."""
    flag = cv2.IMREAD_REDUCED_GRAYSCALE_4 if path.suffix.lower() in (".jpg", ".jpeg") else cv2.IMREAD_GRAYSCALE
    image = cv2.imread(str(path), flag)
    return None if image is None else thumbnail(image)


def _image_size(path: Path) -> tuple[int, int] | None:
    """(width, height) from the image header, None if the file cannot be read as an image."""
    try:
        with Image.open(path) as image:
            return image.size
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


class MediaReader:
    """Reads one video file, image folder or single image as a sequence of frames."""

    def __init__(self, path: Path, stride: int = 1):
        if stride < 1:
            raise ValueError(f"stride must be >= 1, got {stride}")
        self.path = Path(path)
        self.stride = stride
        self.backend = ""
        self.declared_frames = 0
        self.decoded_frames = 0
        self.truncated_reason = ""
        self.fps: float | None = None
        self.first_error = ""

    def frames(self) -> Iterator[Frame]:
        """Yield the frames at the stride; raises UnreadableMediaError if nothing decodes."""
        if self.path.is_dir():
            yield from self._image_folder(list_images(self.path))
        elif self.path.suffix.lower() in IMAGE_EXTENSIONS:
            yield from self._image_folder([self.path])
        else:
            yield from self._video()

    def check_complete(self) -> None:
        """Raise UnreadableMediaError if the stream ended early (call after `frames()` is exhausted)."""
        if self.decoded_frames == 0:
            why = f" ({self.first_error})" if self.first_error else ""
            raise UnreadableMediaError(f"{self.path}: no frame could be decoded{why}")
        if self.truncated_reason:
            raise UnreadableMediaError(f"{self.path}: {self.truncated_reason}")

    def _image_folder(self, files: list[Path]) -> Iterator[Frame]:
        self.backend = "images"
        self.declared_frames = len(files)
        if not files:
            raise UnreadableMediaError(f"{self.path}: folder holds no image")
        for index in range(0, len(files), self.stride):
            image = cv2.imread(str(files[index]), cv2.IMREAD_COLOR)
            if image is None:
                reason = _undecodable_reason(files[index])
                if len(files) == 1:
                    self.first_error = reason
                else:
                    self.first_error = self.first_error or f"{files[index].name}: {reason}"
                yield Frame(index, None, files[index].name, reason)
                continue
            self.decoded_frames += 1
            yield Frame(index, image, files[index].name)

    def _video(self) -> Iterator[Frame]:
        capture = cv2.VideoCapture(str(self.path))
        if capture.isOpened():
            capture.set(cv2.CAP_PROP_ORIENTATION_AUTO, 1)
            ok, first = capture.read()
            if ok:
                self.backend = "opencv"
                self.declared_frames = max(0, int(capture.get(cv2.CAP_PROP_FRAME_COUNT)))
                self.fps = float(capture.get(cv2.CAP_PROP_FPS)) or None
                yield from self._opencv_frames(capture, first)
                capture.release()
                return
        capture.release()
        yield from self._pyav_frames()

    def _opencv_frames(self, capture: cv2.VideoCapture, first: np.ndarray) -> Iterator[Frame]:
        index = 0
        self.decoded_frames = 1
        yield Frame(0, first)
        while True:
            for _ in range(self.stride - 1):
                if not capture.grab():
                    self._note_end(index + 1)
                    return
                index += 1
            ok, image = capture.read()
            if not ok:
                self._note_end(index + 1)
                return
            index += 1
            self.decoded_frames += 1
            yield Frame(index, image)

    def _pyav_frames(self) -> Iterator[Frame]:
        try:
            import av  # optional: only needed for files OpenCV cannot open
        except ImportError:
            raise UnreadableMediaError(
                f"{self.path}: OpenCV cannot decode this file (PyAV, the fallback, is not installed:"
                " pip install av)"
            ) from None
        try:
            container = av.open(str(self.path))
        except Exception as exc:  # PyAV raises many FFmpeg error types
            raise UnreadableMediaError(f"{self.path}: cannot open as video ({exc})") from None
        with container:
            if not container.streams.video:
                raise UnreadableMediaError(f"{self.path}: no video stream")
            stream = container.streams.video[0]
            self.backend = "pyav"
            self.declared_frames = int(stream.frames or 0)
            self.fps = float(stream.average_rate) if stream.average_rate else None
            index = -1
            try:
                for decoded in container.decode(stream):
                    index += 1
                    if index % self.stride:
                        continue
                    image = _rotate(decoded.to_ndarray(format="bgr24"), getattr(decoded, "rotation", 0))
                    self.decoded_frames += 1
                    yield Frame(index, image)
            except av.error.FFmpegError as exc:
                self.truncated_reason = f"decoding stopped at frame {index + 1} ({exc})"
                return
            self._note_end(index + 1)

    def _note_end(self, frames_seen: int) -> None:
        """Flag a stream that ended clearly before its declared length."""
        declared = self.declared_frames
        if declared and frames_seen < declared * (1 - _TRUNCATION_TOLERANCE) - 1:
            self.truncated_reason = f"truncated: stream ended after {frames_seen} of {declared} declared frames"


def _undecodable_reason(path: Path) -> str:
    """Why OpenCV could not decode an image file."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    return "empty file" if size == 0 else f"not a decodable image ({size} bytes; OpenCV imread failed)"


def _rotate(image: np.ndarray, degrees: float) -> np.ndarray:
    """Rotate by a multiple of 90 degrees (counter-clockwise, as in a display matrix)."""
    turns = int(round(degrees / 90.0)) % 4
    return np.ascontiguousarray(np.rot90(image, turns)) if turns else image
