"""Helpers for the inference-mode and OpenCV cross-check tests: meaningful random weights."""
from __future__ import annotations

import numpy as np
import torch

from caffe.layers.normalization import BatchNorm, Scale
from caffe.net import Net


def randomize_weights(net: Net, seed: int = 0) -> None:
    """Give every BatchNorm random statistics stored with a scale factor != 1 (Caffe's
    ``mean*s, var*s, s``) and every Scale a random gamma/beta, so that folding and importers
    are exercised on more than identity normalisation. Other blobs keep their filler values."""
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for layer in net.modules:
            if isinstance(layer, BatchNorm):
                c = layer.blobs[0].numel()
                s = rng.uniform(0.5, 4.0)
                mean = rng.normal(0.0, 0.5, c)
                var = rng.uniform(0.3, 2.0, c)
                layer.blobs[0].copy_(torch.from_numpy(mean * s))
                layer.blobs[1].copy_(torch.from_numpy(var * s))
                layer.blobs[2].fill_(s)
            elif isinstance(layer, Scale):
                for i, p in enumerate(layer.blobs):
                    base = 1.0 if i == 0 else 0.0
                    p.copy_(torch.from_numpy(base + rng.normal(0.0, 0.2, tuple(p.shape))))

