"""The toolkit's transform_param extension (max_rotation, max_scale_jitter): TRAIN only, after
Caffe's own draws, the rotation cv2 defines, and rejected values."""
from __future__ import annotations

import numpy as np
import pytest

from caffe.data.transformer import TEST, TRAIN, DataTransformer, TransformSpec, rotate_scale
from caffe.errors import DataError
from caffe.proto import caffe_pb2


class RecordingRng:
    """numpy-Generator-like: fixed integer draws, fixed uniform draws, records what was asked."""

    def __init__(self, ints, uniforms=()):
        self.ints, self.uniforms, self.asked = list(ints), list(uniforms), []

    def integers(self, n):
        self.asked.append(("int", n))
        return self.ints.pop(0)

    def uniform(self, lo, hi):
        self.asked.append(("uniform", lo, hi))
        return self.uniforms.pop(0)


def _pixels(seed=0, shape=(1, 12, 12)):
    return np.random.default_rng(seed).integers(0, 256, shape).astype(np.uint8)


def test_quarter_turn_is_numpy_rot90():
    img = _pixels(1, (2, 9, 9))
    assert np.array_equal(rotate_scale(img, 90.0, 1.0), np.rot90(img, 1, axes=(1, 2)))


def test_train_rotation_comes_after_caffe_draws_and_before_the_crop():
    img = _pixels(2)
    spec = TransformSpec(phase=TRAIN, mirror=True, crop_size=8, max_rotation=30.0, max_scale_jitter=0.2)
    rng = RecordingRng(ints=[0, 1, 3], uniforms=[90.0, 0.0])
    out = np.empty((1, 8, 8), np.float32)
    DataTransformer(spec).transform(img, out, rng)
    assert rng.asked == [("int", 2), ("int", 5), ("int", 5), ("uniform", -30.0, 30.0), ("uniform", -0.2, 0.2)]
    expected = np.rot90(img, 1, axes=(1, 2))[:, 1:9, 3:11].astype(np.float32)
    assert np.array_equal(out, expected)


def test_scale_jitter_zooms_about_the_centre():
    img = np.zeros((1, 11, 11), np.uint8)
    img[0, 4:7, 4:7] = 200
    zoomed = rotate_scale(img, 0.0, 2.0)
    assert zoomed[0, 5, 5] == 200 and zoomed[0, 3, 5] == 200 and zoomed[0, 1, 5] == 0
    assert img[0, 3, 5] == 0


def test_test_phase_and_zero_widths_draw_nothing_extra():
    img = _pixels(3)
    for spec in (TransformSpec(phase=TEST, mirror=True, max_rotation=30.0, max_scale_jitter=0.2),
                 TransformSpec(phase=TRAIN, mirror=True)):
        rng = RecordingRng(ints=[0])
        out = np.empty((1, 12, 12), np.float32)
        DataTransformer(spec).transform(img, out, rng)
        assert rng.asked == [("int", 2)]
        assert np.array_equal(out, img.astype(np.float32))


@pytest.mark.parametrize("rotation, jitter", [(-1.0, 0.0), (0.0, 1.0), (0.0, -0.1)])
def test_bad_jitter_values_are_refused(rotation, jitter):
    tp = caffe_pb2.TransformationParameter(max_rotation=rotation, max_scale_jitter=jitter)
    with pytest.raises(DataError, match="layer 'data'.*max_rotation"):
        TransformSpec.from_param(tp, TRAIN, where="layer 'data'")
