"""DataTransformer: Caffe's order (crop, mirror, mean, scale), its random draws and its checks,
against an element-by-element reference written from Caffe's index formulas."""
from __future__ import annotations

import numpy as np
import pytest

from caffe.data.transformer import TRAIN, TEST, DataTransformer, TransformSpec, load_mean_file
from caffe.errors import DataError
from caffe.model_io import array_to_blobproto, write_blobproto
from caffe.proto import caffe_pb2


class RecordingRng:
    """Hands out fixed draws and records the bounds asked for."""

    def __init__(self, draws):
        self.draws, self.bounds = list(draws), []

    def integers(self, n):
        self.bounds.append(n)
        return self.draws.pop(0)


def reference(pixels, spec, mirror, h_off, w_off):
    """Caffe's DataTransformer loop: top[(c*H+h)*W + (W-1-w if mirror else w)] =
    (pixel[c, h_off+h, w_off+w] - mean) * scale, in float32."""
    c_, h_, w_ = pixels.shape
    oh = ow = spec.crop_size or None
    oh, ow = (oh or h_), (ow or w_)
    out = np.zeros((c_, oh, ow), np.float32)
    for c in range(c_):
        for h in range(oh):
            for w in range(ow):
                x = np.float32(pixels[c, h_off + h, w_off + w])
                if spec.mean is not None:
                    x = x - spec.mean[c, h_off + h, w_off + w]
                elif spec.mean_values:
                    x = x - np.float32(spec.mean_values[c if len(spec.mean_values) > 1 else 0])
                out[c, h, ow - 1 - w if mirror else w] = np.float32(x) * np.float32(spec.scale)
    return out


@pytest.fixture
def pixels():
    return np.random.default_rng(1).integers(0, 256, (3, 7, 9), dtype=np.uint8)


def test_test_phase_crop_is_centred_with_integer_division_and_mean_file_offset(pixels):
    mean = np.random.default_rng(2).uniform(0, 255, (3, 7, 9)).astype(np.float32)
    spec = TransformSpec(phase=TEST, scale=0.0078125, crop_size=4, mean=mean)
    out = np.empty((3, 4, 4), np.float32)
    DataTransformer(spec).transform(pixels, out, None)
    assert np.array_equal(out, reference(pixels, spec, False, (7 - 4) // 2, (9 - 4) // 2))


def test_train_draws_mirror_then_h_off_then_w_off(pixels):
    spec = TransformSpec(phase=TRAIN, mirror=True, crop_size=5, mean_values=(10.0, 20.0, 30.0),
                         scale=0.5)
    rng = RecordingRng([1, 2, 3])
    out = np.empty((3, 5, 5), np.float32)
    DataTransformer(spec).transform(pixels, out, rng)
    assert rng.bounds == [2, 7 - 5 + 1, 9 - 5 + 1]
    assert np.array_equal(out, reference(pixels, spec, True, 2, 3))


def test_mirror_is_random_in_test_phase_too_as_in_caffe(pixels):
    spec = TransformSpec(phase=TEST, mirror=True)
    rng = RecordingRng([1])
    out = np.empty(pixels.shape, np.float32)
    DataTransformer(spec).transform(pixels, out, rng)
    assert rng.bounds == [2]
    assert np.array_equal(out, pixels[:, :, ::-1].astype(np.float32))


def test_no_draws_without_mirror_or_train_crop(pixels):
    out = np.empty((3, 3, 3), np.float32)
    DataTransformer(TransformSpec(phase=TEST, crop_size=3)).transform(pixels, out, RecordingRng([]))


def test_one_mean_value_applies_to_all_channels(pixels):
    spec = TransformSpec(phase=TEST, mean_values=(100.0,), scale=1 / 256)
    out = np.empty(pixels.shape, np.float32)
    DataTransformer(spec).transform(pixels, out, None)
    assert np.array_equal(out, reference(pixels, spec, False, 0, 0))


def test_float_data_items_are_transformed_like_bytes():
    x = np.random.default_rng(3).standard_normal((2, 4, 4)).astype(np.float32)
    spec = TransformSpec(phase=TEST, mean_values=(0.5, -1.0), scale=3.0)
    out = np.empty(x.shape, np.float32)
    DataTransformer(spec).transform(x, out, None)
    assert np.array_equal(out, reference(x, spec, False, 0, 0))


def test_checks_mean_size_mean_value_count_and_crop():
    t = DataTransformer(TransformSpec(phase=TEST, mean=np.zeros((3, 5, 5), np.float32)))
    with pytest.raises(DataError, match="mean file has shape"):
        t.check_input((3, 6, 6))
    with pytest.raises(DataError, match="1 mean_value or as many as channels"):
        DataTransformer(TransformSpec(phase=TEST, mean_values=(1.0, 2.0))).check_input((3, 4, 4))
    with pytest.raises(DataError, match="crop_size 9 is larger"):
        DataTransformer(TransformSpec(phase=TEST, crop_size=9)).check_input((1, 8, 8))


def test_from_param_rejects_mean_file_with_mean_value(tmp_path):
    tp = caffe_pb2.TransformationParameter(mean_file=str(tmp_path / "m.binaryproto"))
    tp.mean_value.append(3)
    with pytest.raises(DataError, match="mean_file and mean_value"):
        TransformSpec.from_param(tp, TEST)


def test_mean_file_is_read_from_binaryproto(tmp_path):
    mean = np.arange(24, dtype=np.float32).reshape(1, 2, 3, 4)
    write_blobproto(array_to_blobproto(mean), tmp_path / "m.binaryproto")
    assert np.array_equal(load_mean_file(tmp_path / "m.binaryproto"), mean[0])
    with pytest.raises(DataError, match="mean file not found"):
        load_mean_file(tmp_path / "missing.binaryproto")
