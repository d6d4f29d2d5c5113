"""The inference mode (caffe.inference.optimize) computes in-place Convolutions and InnerProducts
whose Caffe arithmetic is not the mathematical layer's (caffe/inplace.py: a blob whose shape they
change, a 1x1 GEMM writing over its input) the way the plain mode and real Caffe do, instead of
the mathematical layer, and never folds a BatchNorm into them: the SSE-ResNet cascade and its
in-place fc_concat, in small, in TEST phase, agree with the plain mode over two passes."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import caffe
from caffe.inference import optimize
from caffe.inplace import InplaceReshapeWarning
from inference_helpers import randomize_weights

NET = """name: "sse_resnet_head_test"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 3 dim: 3 dim: 8 dim: 8 } } }
layer { name: "pre" type: "Convolution" bottom: "data" top: "x" convolution_param { num_output: 4 kernel_size: 3 pad: 1 } }
layer { name: "bn1" type: "BatchNorm" bottom: "x" top: "x" }
layer { name: "sc1" type: "Scale" bottom: "x" top: "x" scale_param { bias_term: true } }
layer { name: "relu1" type: "ReLU" bottom: "x" top: "x" }
layer { name: "conv_grow" type: "Convolution" bottom: "x" top: "x" convolution_param { num_output: 12 kernel_size: 1 } }
layer { name: "bn2" type: "BatchNorm" bottom: "x" top: "x" }
layer { name: "sc2" type: "Scale" bottom: "x" top: "x" scale_param { bias_term: true } }
layer { name: "relu2" type: "ReLU" bottom: "x" top: "x" }
layer { name: "conv_s2" type: "Convolution" bottom: "x" top: "x" convolution_param { num_output: 6 kernel_size: 3 stride: 2 pad: 1 } }
layer { name: "bn3" type: "BatchNorm" bottom: "x" top: "x" }
layer { name: "sc3" type: "Scale" bottom: "x" top: "x" scale_param { bias_term: true } }
layer { name: "relu3" type: "ReLU" bottom: "x" top: "x" }
layer { name: "fc" type: "InnerProduct" bottom: "x" top: "fc" inner_product_param { num_output: 40 } }
layer { name: "fc_inplace" type: "InnerProduct" bottom: "fc" top: "fc" inner_product_param { num_output: 7 } }
"""


@pytest.mark.parametrize("fold", [True, False])
def test_inference_mode_runs_the_in_place_emulation_like_the_plain_mode(tmp_path, fold) -> None:
    path = tmp_path / "net.prototxt"
    path.write_text(NET)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InplaceReshapeWarning)
        plain = caffe.Net(str(path), caffe.TEST)
        randomize_weights(plain, seed=3)
        rng = np.random.default_rng(3)
        for name in ("pre", "conv_grow", "conv_s2", "fc", "fc_inplace"):
            for blob in plain.params[name]:
                blob.data[...] = rng.normal(0.0, 0.4, blob.data.shape)
        weights = tmp_path / "w.caffemodel"
        plain.save(str(weights))
        fast_net = caffe.Net(str(path), caffe.TEST, weights=str(weights))
    fast = optimize(fast_net, fold=fold)
    rng = np.random.default_rng(0)
    for _ in range(2):  # the second pass reads what the first left in the buffers
        x = rng.standard_normal((3, 3, 8, 8)).astype(np.float32)
        want = plain.forward(blobs=["x"], data=x)
        got = fast.forward(blobs=["x"], data=x)
        for key in ("x", "fc"):
            np.testing.assert_allclose(got[key], want[key], rtol=1e-4, atol=1e-4, err_msg=key)
