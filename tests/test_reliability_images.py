"""Images that cannot be used: a JPEG cut short (OpenCV would fill grey rows), a file that exists
but does not decode, one that is missing, and an image with the wrong number of channels for
caffe.io.Transformer; each is named with the reason."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

import caffe
from caffe.data import iterate
from caffe.data.datum import read_image, why_unreadable
from caffe.errors import DataError
from caffe.tools import convert_imageset


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "img"
    folder.mkdir()
    rng = np.random.default_rng(0)
    ok, jpeg = cv2.imencode(".jpg", rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))
    jpeg = jpeg.tobytes()
    (folder / "good.jpg").write_bytes(jpeg)
    (folder / "cut.jpg").write_bytes(jpeg[: len(jpeg) * 2 // 3])
    (folder / "junk.png").write_bytes(b"this is not a PNG")
    (tmp_path / "list.txt").write_text("good.jpg 1\ncut.jpg 2\njunk.png 3\nmissing.png 4\n")
    return tmp_path


def test_each_unreadable_image_is_named_with_its_reason(images):
    folder = images / "img"
    assert read_image(folder / "good.jpg").shape == (32, 32, 3)
    assert read_image(folder / "cut.jpg") is None
    assert why_unreadable(folder / "cut.jpg") == (f"{folder / 'cut.jpg'} is a truncated JPEG (no "
                                                  "end-of-image marker after its last scan)")
    assert why_unreadable(folder / "junk.png").startswith(f"cannot decode {folder / 'junk.png'}")
    assert why_unreadable(folder / "missing.png") == f"could not open or find file {folder / 'missing.png'}"


def test_convert_imageset_skips_a_truncated_jpeg_naming_line_and_file(images, capsys):
    out = images / "db"
    assert convert_imageset.main([f"{images / 'img'}/", str(images / "list.txt"), str(out)]) == 0
    err = capsys.readouterr().err
    assert f"list.txt:2: {images / 'img' / 'cut.jpg'} is a truncated JPEG" in err
    assert f"list.txt:3: cannot decode {images / 'img' / 'junk.png'}" in err
    assert f"list.txt:4: could not open or find file {images / 'img' / 'missing.png'}" in err
    assert [k for k, _ in iterate(out, "lmdb")] == [b"00000000_good.jpg"]


def test_transformer_refuses_an_image_with_the_wrong_number_of_channels():
    transformer = caffe.io.Transformer({"data": (1, 3, 8, 8)})
    transformer.set_transpose("data", (2, 0, 1))
    assert transformer.preprocess("data", np.zeros((8, 8, 3), np.float32)).shape == (3, 8, 8)
    with pytest.raises(DataError, match=r"preprocess\('data'\): the image gives 1 channels .* blob "
                                        r"'data' takes 3 .*color=True"):
        transformer.preprocess("data", np.zeros((10, 10, 1), np.float32))
    with pytest.raises(DataError, match=r"an image of shape \(8, 8\) has 2 axes; set_transpose expects 3"):
        transformer.preprocess("data", np.zeros((8, 8), np.float32))
