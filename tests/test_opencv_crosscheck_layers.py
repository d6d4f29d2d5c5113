"""Independent cross-check of the engine against OpenCV's Caffe importer on a small net that holds
the constructs of the SSE nets: BatchNorm with a scale factor, Scale, in-place layers, an
in-place Convolution, Power with shift, Eltwise coeff, Concat, ceil-mode MAX/AVE pooling,
InnerProduct, Softmax. Both read the same prototxt and caffemodel."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import caffe
from caffe.inference import optimize
from caffe.model_io import parse_net_text, write_text
from golden_utils import rel_err
from inference_helpers import last_writers, randomize_weights, rename_inplace_tops
from test_inference_equivalence import NET

cv2 = pytest.importorskip("cv2")

# OpenCV's InnerProduct ignores ``transpose`` (it reads the (K, N) blob as if it were (N, K)); the
# SSE nets do not use it, so the cross-checked copy of the test net leaves it out.
CROSSCHECK_NET = NET.replace("transpose: true ", "")
COMPARED = ["prob", "ip2", "ip1", "cat", "sum", "pool3", "pool3b", "bn3", "scale2", "conv1"]


def opencv_forward(prototxt: Path, caffemodel: Path, x: np.ndarray, layers: list[str]
                   ) -> list[np.ndarray]:
    net = cv2.dnn.readNetFromCaffe(str(prototxt), str(caffemodel))
    net.setInput(x)
    return [np.asarray(o) for o in net.forward(layers)]


def test_opencv_reads_our_caffemodel_and_agrees_blob_by_blob(tmp_path: Path) -> None:
    net_param = parse_net_text(CROSSCHECK_NET)
    caffe.set_random_seed(3)
    net = caffe.Net(net_param=net_param, phase=caffe.TEST)
    randomize_weights(net, seed=3)
    net.save(tmp_path / "w.caffemodel")
    write_text(rename_inplace_tops(net_param), tmp_path / "opencv.prototxt")
    x = np.random.default_rng(0).normal(0, 1, (2, 3, 20, 20)).astype(np.float32)
    ours = {k: v.copy() for k, v in net.forward(blobs=COMPARED, data=x).items()}
    writers = last_writers(net_param)
    theirs = opencv_forward(tmp_path / "opencv.prototxt", tmp_path / "w.caffemodel", x,
                            [writers[b] for b in COMPARED])
    for name, other in zip(COMPARED, theirs):
        assert rel_err(ours[name], other.reshape(ours[name].shape)) < 1e-4, name
    fast = optimize(net).forward(data=x)["prob"]
    assert rel_err(fast, theirs[0].reshape(fast.shape)) < 1e-4


def test_renaming_inplace_convolution_keeps_the_computation() -> None:
    renamed = rename_inplace_tops(parse_net_text(NET))
    by_name = {lp.name: lp for lp in renamed.layer}
    assert list(by_name["conv_inplace"].top) == ["sum/conv_inplace"]
    assert list(by_name["bn_inplace"].bottom) == ["sum/conv_inplace"]
    assert list(by_name["scale_inplace"].top) == ["sum/conv_inplace"]
    assert list(by_name["conv4"].bottom) == ["sum/conv_inplace"]
    assert list(by_name["ip2"].top) == ["ip2"]
    caffe.set_random_seed(0)
    a = caffe.Net(net_param=parse_net_text(NET), phase=caffe.TEST)
    caffe.set_random_seed(0)
    b = caffe.Net(net_param=renamed, phase=caffe.TEST)
    x = np.random.default_rng(1).normal(0, 1, (2, 3, 20, 20)).astype(np.float32)
    np.testing.assert_array_equal(a.forward(data=x)["prob"], b.forward(data=x)["prob"])
