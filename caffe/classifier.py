"""pycaffe's ``caffe.Classifier``: a TEST net that takes H x W x K images (as ``caffe.io.load_image``
gives them), resizes them, takes the centre crop or ten crops, preprocesses them with
``caffe.io.Transformer`` and returns the class probabilities (the ten crops' mean)."""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from . import io
from .layers.base import TEST
from .net import Net


class Classifier(Net):
    """``Classifier(model_file, pretrained_file, image_dims=None, mean=None, input_scale=None,
    raw_scale=None, channel_swap=None)``: the preprocessing is set on the net's first input."""

    def __init__(self, model_file: str | os.PathLike, pretrained_file: str | os.PathLike,
                 image_dims: Sequence[int] | None = None, mean: np.ndarray | None = None,
                 input_scale: float | None = None, raw_scale: float | None = None,
                 channel_swap: Sequence[int] | None = None) -> None:
        super().__init__(model_file, TEST, weights=pretrained_file)
        in_ = self.inputs[0]
        self.transformer = configured_transformer(self, mean, input_scale, raw_scale, channel_swap)
        self.crop_dims = np.array(self.blobs[in_].data.shape[2:])
        self.image_dims = np.array(image_dims if image_dims is not None else self.crop_dims)

    def predict(self, inputs: Sequence[np.ndarray], oversample: bool = True) -> np.ndarray:
        """N x C class probabilities for N images (H x W x K, any size)."""
        resized = np.zeros((len(inputs), *self.image_dims, inputs[0].shape[2]), dtype=np.float32)
        for n, image in enumerate(inputs):
            resized[n] = io.resize_image(image, self.image_dims)
        if oversample:
            crops = io.oversample(resized, self.crop_dims)
        else:
            top = ((self.image_dims - self.crop_dims) / 2.0).astype(int)
            crops = resized[:, top[0]:top[0] + self.crop_dims[0], top[1]:top[1] + self.crop_dims[1]]
        in_ = self.inputs[0]
        batch = np.stack([self.transformer.preprocess(in_, c) for c in crops])
        scores = self.forward_all(**{in_: batch})[self.outputs[0]]
        if oversample:
            scores = scores.reshape(len(scores) // 10, 10, -1).mean(axis=1)
        return scores


def configured_transformer(net: Net, mean, input_scale, raw_scale, channel_swap) -> io.Transformer:
    """A Transformer for the net's first input: H x W x K to K x H x W, then the options given."""
    in_ = net.inputs[0]
    transformer = io.Transformer({in_: net.blobs[in_].data.shape})
    transformer.set_transpose(in_, (2, 0, 1))
    if mean is not None:
        transformer.set_mean(in_, mean)
    if input_scale is not None:
        transformer.set_input_scale(in_, input_scale)
    if raw_scale is not None:
        transformer.set_raw_scale(in_, raw_scale)
    if channel_swap is not None:
        transformer.set_channel_swap(in_, channel_swap)
    return transformer
