"""caffe.io images and Transformer: pycaffe's order of operations, its checks, and OpenCV loading."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from caffe import io as caffe_io
from caffe.errors import DataError

from conftest import GOLDEN

GOLDEN_CASES = ("datum_db",)

DATUM_DB = GOLDEN / "datum_db"


@pytest.fixture
def transformer():
    t = caffe_io.Transformer({"data": (1, 3, 4, 5)})
    t.set_transpose("data", (2, 0, 1))
    t.set_channel_swap("data", (2, 1, 0))
    t.set_raw_scale("data", 255.0)
    t.set_mean("data", np.array([10.0, 20.0, 30.0]))
    t.set_input_scale("data", 0.5)
    return t


def test_preprocess_applies_pycaffes_order(transformer):
    image = np.random.default_rng(1).random((4, 5, 3)).astype(np.float32)
    out = transformer.preprocess("data", image)
    chw_bgr = image.transpose(2, 0, 1)[[2, 1, 0]]
    expected = (chw_bgr * 255.0 - np.array([10.0, 20.0, 30.0])[:, None, None]) * 0.5
    assert out.dtype == np.float32 and out.shape == (3, 4, 5)
    np.testing.assert_allclose(out, expected, rtol=1e-6)


def test_preprocess_does_not_modify_its_argument(transformer):
    image = np.ones((4, 5, 3), np.float32)
    transformer.preprocess("data", image)
    np.testing.assert_array_equal(image, 1.0)


def test_deprocess_inverts_preprocess(transformer):
    image = np.random.default_rng(2).random((4, 5, 3)).astype(np.float32)
    back = transformer.deprocess("data", transformer.preprocess("data", image)[np.newaxis])
    np.testing.assert_allclose(back, image, atol=1e-5)


def test_preprocess_resizes_to_the_input_size():
    t = caffe_io.Transformer({"data": [2, 3, 6, 8]})
    t.set_transpose("data", (2, 0, 1))
    image = np.random.default_rng(3).random((12, 16, 3)).astype(np.float32)
    out = t.preprocess("data", image)
    assert out.shape == (3, 6, 8)
    np.testing.assert_allclose(out, caffe_io.resize_image(image, (6, 8)).transpose(2, 0, 1))


def test_elementwise_mean_image():
    t = caffe_io.Transformer({"data": (1, 1, 2, 2)})
    t.set_transpose("data", (2, 0, 1))
    t.set_mean("data", np.array([[1.0, 2.0], [3.0, 4.0]]))  # H x W for one channel
    out = t.preprocess("data", np.full((2, 2, 1), 10.0, np.float32))
    np.testing.assert_array_equal(out, [[[9, 8], [7, 6]]])


@pytest.mark.parametrize("setter, value, match", [
    ("set_mean", np.zeros(4), "Mean channels"),
    ("set_mean", np.zeros((3, 5, 5)), "incompatible"),
    ("set_mean", np.zeros((1, 1, 3, 4, 5)), "invalid"),
    ("set_transpose", (1, 0), "Transpose"),
    ("set_channel_swap", (1, 0), "Channel swap"),
])
def test_transformer_rejects_mismatched_settings(setter, value, match):
    t = caffe_io.Transformer({"data": (1, 3, 4, 5)})
    with pytest.raises(DataError, match=match):
        getattr(t, setter)("data", value)


def test_transformer_rejects_unknown_input():
    t = caffe_io.Transformer({"data": (1, 3, 4, 5)})
    with pytest.raises(DataError, match="not one of the net inputs"):
        t.set_raw_scale("image", 255)
    with pytest.raises(DataError, match="not one of the net inputs"):
        t.preprocess("image", np.zeros((4, 5, 3)))


def test_load_image_color_is_rgb_float_in_unit_range():
    path = DATUM_DB / "images" / "img0.png"
    img = caffe_io.load_image(str(path))
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert img.dtype == np.float32 and img.shape == bgr.shape
    np.testing.assert_allclose(img, bgr[:, :, ::-1] / 255.0, rtol=1e-6)


def test_load_image_gray_file_as_gray_and_as_color():
    path = DATUM_DB / "gray" / "g0.png"
    gray = caffe_io.load_image(str(path), color=False)
    assert gray.ndim == 3 and gray.shape[2] == 1
    color = caffe_io.load_image(str(path))
    assert color.shape == gray.shape[:2] + (3,)
    for c in range(3):
        np.testing.assert_array_equal(color[:, :, c], gray[:, :, 0])


def test_load_image_16_bit_scales_by_65535(tmp_path):
    data = np.array([[0, 65535], [32768, 1000]], np.uint16)
    path = tmp_path / "deep.png"
    cv2.imwrite(str(path), data)
    img = caffe_io.load_image(str(path), color=False)
    np.testing.assert_allclose(img[:, :, 0], data / 65535.0, rtol=1e-6)


def test_load_image_missing_file_is_data_error(tmp_path):
    with pytest.raises(DataError, match="cannot read image"):
        caffe_io.load_image(str(tmp_path / "missing.jpg"))


def test_resize_image_bilinear_matches_opencv_and_keeps_channel_axis():
    im = np.random.default_rng(4).random((5, 7, 1)).astype(np.float32)
    out = caffe_io.resize_image(im, (10, 3))
    assert out.shape == (10, 3, 1) and out.dtype == np.float32
    np.testing.assert_array_equal(out[:, :, 0], cv2.resize(im[:, :, 0], (3, 10)))


def test_resize_image_nearest_doubling_repeats_pixels():
    im = np.arange(6, dtype=np.float64).reshape(2, 3, 1)
    out = caffe_io.resize_image(im, (4, 6), interp_order=0)
    np.testing.assert_array_equal(out[:, :, 0], np.repeat(np.repeat(im[:, :, 0], 2, 0), 2, 1))


def test_resize_image_many_channels():
    im = np.random.default_rng(5).random((4, 4, 600)).astype(np.float32)
    out = caffe_io.resize_image(im, (2, 2))
    assert out.shape == (2, 2, 600)
    np.testing.assert_allclose(out[:, :, 599], cv2.resize(im[:, :, 599], (2, 2)), rtol=1e-6)


def test_resize_image_constant_image_stays_constant():
    out = caffe_io.resize_image(np.full((3, 3, 3), 0.25), (5, 4))
    np.testing.assert_array_equal(out, 0.25)


def test_resize_image_rejects_unsupported_order():
    with pytest.raises(DataError, match="interp_order"):
        caffe_io.resize_image(np.zeros((2, 2, 1)), (4, 4), interp_order=2)


def test_oversample_gives_corners_centre_and_mirrors():
    image = np.arange(7 * 8 * 2, dtype=np.float32).reshape(7, 8, 2)
    crops = caffe_io.oversample([image, image + 1], (4, 4))
    assert crops.shape == (20, 4, 4, 2) and crops.dtype == np.float32
    expected_corners = [(0, 0), (0, 4), (3, 0), (3, 4), (1, 2)]  # centre: int(3.5 - 2), int(4 - 2)
    for i, (y, x) in enumerate(expected_corners):
        np.testing.assert_array_equal(crops[i], image[y:y + 4, x:x + 4])
        np.testing.assert_array_equal(crops[i + 5], image[y:y + 4, x:x + 4][:, ::-1])
        np.testing.assert_array_equal(crops[i + 10], image[y:y + 4, x:x + 4] + 1)


def test_oversample_rejects_crop_larger_than_image():
    with pytest.raises(DataError, match="larger"):
        caffe_io.oversample([np.zeros((3, 3, 1))], (4, 4))


def test_blobprotovector_round_trip():
    arrays = [np.arange(6, dtype=np.float32).reshape(2, 3), np.ones((1, 2, 2, 2), np.float32)]
    back = caffe_io.blobprotovector_str_to_arraylist(caffe_io.arraylist_to_blobprotovector_str(arrays))
    assert len(back) == 2
    for a, b in zip(arrays, back):
        np.testing.assert_array_equal(a, b)


def test_blobproto_helpers_are_pycaffes_names():
    arr = np.arange(4, dtype=np.float32).reshape(1, 4)
    np.testing.assert_array_equal(caffe_io.blobproto_to_array(caffe_io.array_to_blobproto(arr)), arr)
