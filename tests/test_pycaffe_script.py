"""A pycaffe classification script runs unchanged and gives the numbers a numpy re-computation of
the same net gives."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

import caffe
from conftest import REPO, shared_data

DEPLOY = """
name: "tiny_classifier"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 10 dim: 3 dim: 32 dim: 32 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 4 kernel_size: 5 stride: 2 weight_filler { type: "gaussian" std: 0.01 }
                            bias_filler { type: "constant" value: 0.2 } } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1" pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
layer { name: "fc" type: "InnerProduct" bottom: "pool1" top: "fc"
        inner_product_param { num_output: 5 weight_filler { type: "gaussian" std: 0.05 } } }
layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }
"""


def _reference(image_path: Path, mean: np.ndarray, params: dict) -> np.ndarray:
    img = cv2.imread(str(image_path), cv2.IMREAD_COLOR).astype(np.float32)  # BGR, 0..255
    img = cv2.resize(img / 255.0, (32, 32), interpolation=cv2.INTER_LINEAR) * 255.0
    x = img.transpose(2, 0, 1) - mean.mean(1).mean(1)[:, None, None]
    w, b = params["conv1"]
    conv = np.zeros((4, 14, 14), np.float64)
    for i in range(14):
        for j in range(14):
            patch = x[:, 2 * i:2 * i + 5, 2 * j:2 * j + 5]
            conv[:, i, j] = (w * patch[None]).sum(axis=(1, 2, 3)) + b
    conv = np.maximum(conv, 0)
    pooled = np.zeros((4, 7, 7))
    for i in range(7):
        for j in range(7):
            pooled[:, i, j] = conv[:, 2 * i:min(2 * i + 3, 14), 2 * j:min(2 * j + 3, 14)].max(axis=(1, 2))
    fw, fb = params["fc"]
    logits = fw @ pooled.reshape(-1) + fb
    e = np.exp(logits - logits.max())
    return e / e.sum()


def test_classification_script_runs_verbatim_and_matches_numpy(tmp_path):
    model_def = tmp_path / "deploy.prototxt"
    model_def.write_text(DEPLOY)
    caffe.set_random_seed(7)
    net = caffe.Net(str(model_def), caffe.TEST)
    weights = tmp_path / "tiny.caffemodel"
    net.save(str(weights))
    mean = np.random.default_rng(0).uniform(90, 130, size=(3, 32, 32)).astype(np.float32)
    np.save(tmp_path / "mean.npy", mean)
    image = shared_data("media", "photos", "dlib_2008_002470.jpg")
    out = tmp_path / "prob.npy"
    script = REPO / "tests" / "scripts" / "classify_pycaffe.py"
    result = subprocess.run([sys.executable, str(script), str(model_def), str(weights),
                             str(tmp_path / "mean.npy"), str(image), str(out)],
                            capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "predicted class is:" in result.stdout
    assert "conv1\t(50, 4, 14, 14)" in result.stdout
    params = {k: [p.data.astype(np.float64) for p in v] for k, v in net.params.items()}
    expected = _reference(image, mean, params)
    np.testing.assert_allclose(np.load(out), expected, rtol=2e-3, atol=1e-4)
    assert int(np.load(out).argmax()) == int(expected.argmax())
