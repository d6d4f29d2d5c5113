"""Caffe's DataTransformer: crop, mirror, subtract the mean, scale — in that order, with Caffe's
random draws.

For each item, as Caffe's ``DataTransformer::Transform``:
  1. ``mirror``: when ``mirror: true`` one draw ``Rand(2)`` decides the flip. Caffe applies it in
     both phases (the random flip is not limited to TRAIN; a TEST layer with ``mirror: true``
     flips at random too).
  2. ``crop_size``: in TRAIN two draws pick the offset (``h_off`` then ``w_off``, each in
     ``[0, size - crop]``); in TEST the crop is centred with integer division.
  3. the mean: ``mean_file`` (a C x H x W BlobProto of the uncropped size, read at the same offset
     as the crop) or ``mean_value`` (one per channel, or one for all channels);
  4. times ``scale``.
An extension of this toolkit (real Caffe rejects it): ``max_rotation`` / ``max_scale_jitter``
rotate and scale the item about its centre by uniform random amounts in TRAIN, before the crop
(two draws after Caffe's, so a net without them keeps Caffe's draw sequence).
The arithmetic is float32: ``(pixel - mean) * scale`` as Caffe computes it in Dtype.

Random numbers come from a numpy Generator passed per batch (see ``caffe.data.sources``), so a
batch's crops and flips depend only on the seed and the batch index, not on which worker made it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import cv2
import numpy as np

from ..errors import DataError
from ..model_io import blobproto_to_array, read_blobproto

TRAIN, TEST = 0, 1


@dataclass(frozen=True)
class TransformSpec:
    """What a TransformationParameter asks for, with the mean file already loaded."""

    phase: int
    scale: float = 1.0
    mirror: bool = False
    crop_size: int = 0
    mean: np.ndarray | None = None  # C x H x W from mean_file
    mean_values: tuple[float, ...] = ()
    force_color: bool = False
    force_gray: bool = False
    max_rotation: float = 0.0
    max_scale_jitter: float = 0.0

    @property
    def jitters(self) -> bool:
        """Whether TRAIN items get the rotation / scale extension."""
        return self.phase == TRAIN and (self.max_rotation > 0 or self.max_scale_jitter > 0)

    @classmethod
    def from_param(cls, tp, phase: int, where: str = "") -> "TransformSpec":
        """From a TransformationParameter; the mean file is read relative to the working directory,
        as in Caffe."""
        prefix = f"{where}: " if where else ""
        if tp.HasField("mean_file") and len(tp.mean_value):
            raise DataError(f"{prefix}cannot specify mean_file and mean_value at the same time")
        if tp.force_color and tp.force_gray:
            raise DataError(f"{prefix}cannot set both force_color and force_gray")
        if tp.max_rotation < 0 or not 0 <= tp.max_scale_jitter < 1:
            raise DataError(f"{prefix}max_rotation must be >= 0 and max_scale_jitter in [0, 1), got "
                            f"{tp.max_rotation} and {tp.max_scale_jitter}")
        mean = None
        if tp.HasField("mean_file"):
            mean = load_mean_file(tp.mean_file)
        return cls(phase=phase, scale=float(tp.scale), mirror=bool(tp.mirror),
                   crop_size=int(tp.crop_size), mean=mean,
                   mean_values=tuple(float(v) for v in tp.mean_value),
                   force_color=bool(tp.force_color), force_gray=bool(tp.force_gray),
                   max_rotation=float(tp.max_rotation), max_scale_jitter=float(tp.max_scale_jitter))


def load_mean_file(path: str | os.PathLike) -> np.ndarray:
    """The C x H x W float32 mean image of a ``.binaryproto`` (legacy 4-D or shaped)."""
    if not os.path.isfile(path):
        raise DataError(f"mean file not found: {path}")
    mean = blobproto_to_array(read_blobproto(path)).astype(np.float32)
    if mean.ndim == 4 and mean.shape[0] == 1:
        mean = mean[0]
    if mean.ndim != 3:
        raise DataError(f"mean file {path}: expected a 1 x C x H x W blob, got shape {mean.shape}")
    return mean


class DataTransformer:
    """Turns C x H x W pixel arrays into transformed float32 items (Caffe's DataTransformer)."""

    def __init__(self, spec: TransformSpec) -> None:
        self.spec = spec
        self._scale = np.float32(spec.scale)

    def output_shape(self, chw: tuple[int, int, int]) -> tuple[int, int, int]:
        """Caffe's InferBlobShape for one item of shape ``chw``."""
        c, h, w = chw
        crop = self.spec.crop_size
        if crop:
            if crop > h or crop > w:
                raise DataError(f"crop_size {crop} is larger than the {h} x {w} input")
            return c, crop, crop
        return c, h, w

    def check_input(self, chw: tuple[int, int, int]) -> None:
        """Errors Caffe reports as CHECK failures: a mean of another size, mean_value count."""
        c, h, w = chw
        self.output_shape(chw)
        mean = self.spec.mean
        if mean is not None and tuple(mean.shape) != (c, h, w):
            raise DataError(f"mean file has shape {tuple(mean.shape)} but the data is {(c, h, w)}")
        nv = len(self.spec.mean_values)
        if nv not in (0, 1, c):
            raise DataError(f"specify either 1 mean_value or as many as channels ({c}), got {nv}")

    def transform(self, pixels: np.ndarray, out: np.ndarray, rng: np.random.Generator | None) -> None:
        """Write the transformed item of ``pixels`` (C x H x W, uint8 or float32) into ``out``
        (float32, the output shape). ``rng`` supplies the mirror and TRAIN-crop draws."""
        spec = self.spec
        c, h, w = pixels.shape
        do_mirror = bool(spec.mirror and _rand(rng, 2))
        h_off = w_off = 0
        oh, ow = h, w
        if spec.crop_size:
            oh = ow = spec.crop_size
            if spec.phase == TRAIN:
                h_off = _rand(rng, h - oh + 1)
                w_off = _rand(rng, w - ow + 1)
            else:
                h_off, w_off = (h - oh) // 2, (w - ow) // 2
        if spec.jitters:
            pixels = rotate_scale(pixels, _uniform(rng, spec.max_rotation),
                                  1.0 + _uniform(rng, spec.max_scale_jitter))
        window = (slice(None), slice(h_off, h_off + oh), slice(w_off, w_off + ow))
        np.copyto(out, pixels[window], casting="unsafe")
        if spec.mean is not None:
            out -= spec.mean[window]
        elif spec.mean_values:
            values = np.asarray(spec.mean_values, dtype=np.float32)
            out -= values.reshape(-1, 1, 1) if values.size == c else values[0]
        if spec.scale != 1.0:
            out *= self._scale
        if do_mirror:
            out[...] = out[:, :, ::-1]


def rotate_scale(pixels: np.ndarray, degrees: float, scale: float) -> np.ndarray:
    """``pixels`` (C x H x W) rotated by ``degrees`` and scaled by ``scale`` about the centre,
    bilinear, edge pixels replicated; same shape and dtype."""
    c, h, w = pixels.shape
    matrix = cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), degrees, scale)
    hwc = np.ascontiguousarray(pixels.transpose(1, 2, 0))
    warped = cv2.warpAffine(hwc, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return warped.reshape(h, w, c).transpose(2, 0, 1)


def _uniform(rng: np.random.Generator | None, half_width: float) -> float:
    """A uniform draw in [-half_width, half_width] (no draw when the width is 0)."""
    if half_width <= 0:
        return 0.0
    if rng is None:
        raise DataError("a random transformation (rotation or scale jitter) needs a random generator")
    return float(rng.uniform(-half_width, half_width))


def _rand(rng: np.random.Generator | None, n: int) -> int:
    """Caffe's ``Rand(n)``: uniform in [0, n)."""
    if rng is None:
        raise DataError("a random transformation (mirror or TRAIN crop) needs a random generator")
    return int(rng.integers(n))
