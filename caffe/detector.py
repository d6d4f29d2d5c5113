"""pycaffe's ``caffe.Detector``: scores windows of images with a TEST net (R-CNN style), each window
cropped with optional context padding, warped to the net's input and preprocessed."""
from __future__ import annotations

import os
from typing import Iterable, Sequence

import numpy as np

from . import io
from .classifier import configured_transformer
from .layers.base import TEST
from .net import Net


class Detector(Net):
    """``Detector(model_file, pretrained_file, mean=None, input_scale=None, raw_scale=None,
    channel_swap=None, context_pad=None)``."""

    def __init__(self, model_file: str | os.PathLike, pretrained_file: str | os.PathLike,
                 mean: np.ndarray | None = None, input_scale: float | None = None,
                 raw_scale: float | None = None, channel_swap: Sequence[int] | None = None,
                 context_pad: int | None = None) -> None:
        super().__init__(model_file, TEST, weights=pretrained_file)
        self.transformer = configured_transformer(self, mean, input_scale, raw_scale, channel_swap)
        self.configure_crop(context_pad)

    def detect_windows(self, images_windows: Iterable[tuple[str, Sequence[Sequence[int]]]]
                       ) -> list[dict]:
        """For each (image file, windows as [ymin, xmin, ymax, xmax] rows): a dict per window with
        its ``window``, ``prediction`` (the first output's values) and ``filename``."""
        crops, meta = [], []
        for filename, windows in images_windows:
            image = io.load_image(filename).astype(np.float32)
            for window in windows:
                window = np.asarray(window)
                crops.append(self.crop(image, window))
                meta.append((filename, window))
        in_ = self.inputs[0]
        batch = np.stack([self.transformer.preprocess(in_, c) for c in crops])
        scores = self.forward_all(**{in_: batch})[self.outputs[0]]
        return [{"window": w, "prediction": scores[i].reshape(-1), "filename": f}
                for i, (f, w) in enumerate(meta)]

    def detect_selective_search(self, image_fnames: Sequence[str]) -> list[dict]:
        """``detect_windows`` on the windows of selective search (the optional
        ``selective_search_ijcv_with_python`` module, as pycaffe)."""
        import selective_search_ijcv_with_python as selective_search
        image_fnames = [os.path.abspath(f) for f in image_fnames]
        windows = selective_search.get_windows(image_fnames, cmd="selective_search_rcnn")
        return self.detect_windows(zip(image_fnames, windows))

    def crop(self, im: np.ndarray, window: np.ndarray) -> np.ndarray:
        """The window of ``im`` (H x W x K); with context padding, the window grown so that after
        warping to the input size ``context_pad`` pixels of context surround it, the part outside
        the image filled with the mean."""
        y0, x0, y1, x1 = (int(v) for v in window)
        if not self.context_pad:
            return im[y0:y1, x0:x1]
        size = float(self.crop_dims[0])
        grow = size / (size - 2 * self.context_pad)
        half = np.array([(y1 - y0 + 1) / 2.0, (x1 - x0 + 1) / 2.0])
        centre = np.array([y0, x0]) + half
        lo = np.round(centre - grow * half)
        hi = np.round(centre + grow * half)
        full = hi - lo + 1
        per_pixel = size / full
        offset = np.round(np.maximum(0, -lo) * per_pixel).astype(int)
        limits = np.array(im.shape[:2], dtype=float)
        lo_c, hi_c = np.clip(lo, 0, limits), np.clip(hi, 0, limits)
        out_size = np.round((hi_c - lo_c + 1) * per_pixel).astype(int)
        out_size = np.minimum(out_size, int(size) - offset)
        region = im[int(lo_c[0]):int(hi_c[0]), int(lo_c[1]):int(hi_c[1])]
        warped = io.resize_image(region, out_size)
        out = np.ones((*self.crop_dims, im.shape[2]), dtype=np.float32) * self.crop_mean
        out[offset[0]:offset[0] + out_size[0], offset[1]:offset[1] + out_size[1]] = warped
        return out

    def configure_crop(self, context_pad: int | None) -> None:
        """Set the context padding and the fill value of the padding: the mean, brought back from
        the net's preprocessed space to the image's (undoing raw scale and channel swap)."""
        in_ = self.inputs[0]
        self.context_pad = context_pad
        self.crop_dims = np.array(self.blobs[in_].data.shape[2:])
        self.crop_mean = 0.0
        if not context_pad:
            return
        t = self.transformer
        if in_ not in t.mean:
            return
        mean = np.asarray(t.mean[in_], dtype=np.float32)
        mean = mean.reshape(mean.shape[0], -1).mean(axis=1)
        if in_ in t.raw_scale:
            mean = mean / t.raw_scale[in_]
        if in_ in t.channel_swap:
            mean = mean[np.argsort(t.channel_swap[in_])]
        self.crop_mean = mean
