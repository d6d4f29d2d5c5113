"""A Python layer written against pycaffe's interface, as users write them (tests only)."""
import numpy as np

import caffe


class EuclideanLossLayer(caffe.Layer):
    """Sum of squared differences / 2N, with its own backward; param_str gives a multiplier."""

    def setup(self, bottom, top):
        if len(bottom) != 2:
            raise Exception("Need two inputs to compute distance.")
        self.mult = float(self.param_str or 1.0)

    def reshape(self, bottom, top):
        if bottom[0].count != bottom[1].count:
            raise Exception("Inputs must have the same dimension.")
        self.diff = np.zeros_like(bottom[0].data, dtype=np.float32)
        top[0].reshape(1)

    def forward(self, bottom, top):
        self.diff[...] = bottom[0].data - bottom[1].data
        top[0].data[...] = self.mult * np.sum(self.diff ** 2) / bottom[0].num / 2.0

    def backward(self, top, propagate_down, bottom):
        for i in range(2):
            if not propagate_down[i]:
                continue
            sign = 1 if i == 0 else -1
            bottom[i].diff[...] = top[0].diff * self.mult * sign * self.diff / bottom[i].num
