"""WindowData: batches of image windows (boxes) listed in a window file, for detection training.

As Caffe's WindowDataLayer. The window file holds, per image, ``# index``, the image path (after
``root_folder``), its channels, height and width, the number of windows, then one line per window:
``label overlap x1 y1 x2 y2``. A window with overlap >= ``fg_threshold`` is foreground (its label
must be > 0); below ``bg_threshold`` it is background with label 0; in between it is dropped. Each
batch holds ``batch_size - int(batch_size * fg_fraction)`` background windows, then the
foreground ones, each drawn at random from its group. A window (widened by ``context_pad`` and
made square with ``crop_mode: "square"``, clipped to the image with the clipped part left 0) is
resized to ``crop_size`` (bilinear, OpenCV), mirrored at random with ``mirror``, and each BGR
pixel becomes (pixel - mean) * ``window_data_param.scale``, the mean from ``mean_file`` or
``mean_value`` (``transform_param``). Windows are read at each forward, from the net's generator."""
from __future__ import annotations

import math

import cv2
import numpy as np
import torch

from .. import model_io
from ..errors import DataError
from .base import Layer, Shape, register


def _c_round(v: float) -> int:
    """C's round(): halves away from zero."""
    return int(math.floor(v + 0.5)) if v >= 0 else -int(math.floor(-v + 0.5))


def read_window_file(source: str, root_folder: str, fg_threshold: float, bg_threshold: float
                     ) -> tuple[list[tuple[str, int]], list[list[float]], list[list[float]]]:
    """(image path, channels) per image index, foreground and background windows
    [image index, label, overlap, x1, y1, x2, y2]."""
    try:
        tokens = open(source).read().split()
    except OSError as exc:
        raise DataError(f"WindowData: cannot open window file '{source}': {exc.strerror}") from None
    if not tokens:
        raise DataError(f"WindowData: window file '{source}' is empty")
    images: list[tuple[str, int]] = []
    fg, bg = [], []
    pos = 0
    try:
        while pos < len(tokens):
            if tokens[pos] != "#":
                raise DataError(f"{source}: expected '#' before image {len(images)}, got "
                                f"'{tokens[pos]}'")
            index, path = int(tokens[pos + 1]), tokens[pos + 2]
            channels, count = int(tokens[pos + 3]), int(tokens[pos + 6])
            pos += 7
            while len(images) <= index:
                images.append(("", 0))
            images[index] = (root_folder + path, channels)
            for _ in range(count):
                label, overlap = int(tokens[pos]), float(tokens[pos + 1])
                x1, y1, x2, y2 = (int(t) for t in tokens[pos + 2:pos + 6])
                pos += 6
                if overlap >= fg_threshold:
                    if label <= 0:
                        raise DataError(f"{source}: foreground window of image {index} has label "
                                        f"{label}; foreground labels must be > 0")
                    fg.append([index, label, overlap, x1, y1, x2, y2])
                elif overlap < bg_threshold:
                    bg.append([index, 0, 0.0, x1, y1, x2, y2])
    except (IndexError, ValueError):
        raise DataError(f"{source}: truncated or malformed window file (near token {pos})") from None
    return images, fg, bg


@register("WindowData")
class WindowData(Layer):
    min_bottoms, max_bottoms, min_tops, max_tops = 0, 0, 2, 2

    def __init__(self, lp, phase: int) -> None:
        super().__init__(lp, phase)
        p, t = lp.window_data_param, lp.transform_param
        self.register_buffer("_device_probe", torch.empty(0), persistent=False)
        self.crop_size = int(t.crop_size)
        if self.crop_size <= 0:
            raise self.error("transform_param.crop_size must be positive")
        if p.batch_size <= 0:
            raise self.error("window_data_param.batch_size must be positive")
        self.images, self.fg, self.bg = read_window_file(p.source, p.root_folder, p.fg_threshold,
                                                         p.bg_threshold)
        if not self.fg or not self.bg:
            raise self.error(f"{p.source} needs foreground and background windows, has "
                             f"{len(self.fg)} and {len(self.bg)}")
        self.channels = self.images[int(self.fg[0][0])][1]
        self.mean_file = None
        self.mean_values = None
        if t.mean_file:
            if len(t.mean_value):
                raise self.error("give mean_file or mean_value, not both")
            self.mean_file = model_io.blobproto_to_array(model_io.read_blobproto(t.mean_file))
            self.mean_file = self.mean_file.reshape(self.mean_file.shape[-3:])
        elif len(t.mean_value):
            values = list(t.mean_value)
            if len(values) not in (1, self.channels):
                raise self.error(f"give 1 mean_value or {self.channels} (one per channel), got "
                                 f"{len(values)}")
            self.mean_values = np.array(values * self.channels if len(values) == 1 else values,
                                        dtype=np.float32)
        self._cache: dict[str, np.ndarray] = {}

    def reshape(self, bottom_shapes: list[Shape]) -> list[Shape]:
        b = int(self.lp.window_data_param.batch_size)
        return [(b, self.channels, self.crop_size, self.crop_size), (b,)]

    def _rand(self) -> int:
        return int(torch.randint(1 << 32, (1,), generator=self.generator))

    def _image(self, path: str) -> np.ndarray:
        img = self._cache.get(path)
        if img is None:
            img = cv2.imread(path, cv2.IMREAD_COLOR)
            if img is None:
                raise DataError(f"layer '{self.name}' (WindowData): could not open or find image "
                                f"'{path}'")
            if self.lp.window_data_param.cache_images:
                self._cache[path] = img
        return img

    def _window(self, window: list[float], mirror: bool, out: np.ndarray) -> None:
        """Write one window into ``out`` (C x crop x crop, zeros where the window left the image)."""
        p = self.lp.window_data_param
        crop = self.crop_size
        img = self._image(self.images[int(window[0])][0])
        x1, y1, x2, y2 = (int(v) for v in window[3:7])
        size_w = size_h = crop
        pad_w = pad_h = 0
        if p.context_pad > 0 or p.crop_mode == "square":
            context_scale = crop / (crop - 2 * p.context_pad)
            half_h, half_w = (y2 - y1 + 1) / 2.0, (x2 - x1 + 1) / 2.0
            cx, cy = x1 + half_w, y1 + half_h
            if p.crop_mode == "square":
                half_h = half_w = max(half_h, half_w)
            x1, x2 = _c_round(cx - half_w * context_scale), _c_round(cx + half_w * context_scale)
            y1, y2 = _c_round(cy - half_h * context_scale), _c_round(cy + half_h * context_scale)
            unclipped_h, unclipped_w = y2 - y1 + 1, x2 - x1 + 1
            pad_x1, pad_y1 = max(0, -x1), max(0, -y1)
            pad_x2, pad_y2 = max(0, x2 - img.shape[1] + 1), max(0, y2 - img.shape[0] + 1)
            x1, x2, y1, y2 = x1 + pad_x1, x2 - pad_x2, y1 + pad_y1, y2 - pad_y2
            scale_x, scale_y = crop / unclipped_w, crop / unclipped_h
            size_w = _c_round((x2 - x1 + 1) * scale_x)
            size_h = _c_round((y2 - y1 + 1) * scale_y)
            pad_h = _c_round(pad_y1 * scale_y)
            pad_w = _c_round((pad_x2 if mirror else pad_x1) * scale_x)
            size_h = min(size_h, crop - pad_h)
            size_w = min(size_w, crop - pad_w)
        patch = cv2.resize(img[y1:y2 + 1, x1:x2 + 1], (size_w, size_h),
                           interpolation=cv2.INTER_LINEAR)
        if mirror:
            patch = cv2.flip(patch, 1)
        pixels = patch.reshape(size_h, size_w, -1).transpose(2, 0, 1).astype(np.float32)
        if self.mean_file is not None:
            off = (self.mean_file.shape[-1] - crop) // 2
            pixels = pixels - self.mean_file[:, off + pad_h:off + pad_h + size_h,
                                             off + pad_w:off + pad_w + size_w]
        elif self.mean_values is not None:
            pixels = pixels - self.mean_values[:, None, None]
        out[:, pad_h:pad_h + size_h, pad_w:pad_w + size_w] = pixels * np.float32(p.scale)

    @torch.no_grad()
    def forward(self) -> list[torch.Tensor]:
        p = self.lp.window_data_param
        batch = int(p.batch_size)
        num_fg = int(batch * p.fg_fraction)
        data = np.zeros((batch, self.channels, self.crop_size, self.crop_size), np.float32)
        labels = np.zeros(batch, np.float32)
        item = 0
        for group, count in ((self.bg, batch - num_fg), (self.fg, num_fg)):
            for _ in range(count):
                window = group[self._rand() % len(group)]
                mirror = bool(self.lp.transform_param.mirror) and self._rand() % 2 == 1
                self._window(window, mirror, data[item])
                labels[item] = window[1]
                item += 1
        device = self._device_probe.device
        return [torch.from_numpy(data).to(device), torch.from_numpy(labels).to(device)]
