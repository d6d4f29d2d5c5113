"""caffe.Classifier and caffe.Detector (pycaffe's wrappers used by python/classify.py and detect.py),
and the process helpers: Timer, init_log/log, solver count and rank, has_nccl / NCCL."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import caffe
from caffe import io

DEPLOY = """name: "tiny"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 4 dim: 3 dim: 6 dim: 6 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
  convolution_param { num_output: 2 kernel_size: 3 weight_filler { type: "gaussian" std: 0.5 } } }
layer { name: "ip" type: "InnerProduct" bottom: "conv" top: "ip"
  inner_product_param { num_output: 3 weight_filler { type: "gaussian" std: 0.5 } } }
layer { name: "prob" type: "Softmax" bottom: "ip" top: "prob" }
"""


@pytest.fixture
def model(tmp_path):
    (tmp_path / "deploy.prototxt").write_text(DEPLOY)
    caffe.set_random_seed(2)
    caffe.Net(str(tmp_path / "deploy.prototxt"), caffe.TEST).save(str(tmp_path / "w.caffemodel"))
    return str(tmp_path / "deploy.prototxt"), str(tmp_path / "w.caffemodel")


def images(n: int, size=(9, 11)) -> list[np.ndarray]:
    rng = np.random.default_rng(n)
    return [rng.uniform(size=(*size, 3)).astype(np.float32) for _ in range(n)]


def manual(net: caffe.Net, transformer, crops) -> np.ndarray:
    batch = np.stack([transformer.preprocess("data", c) for c in crops])
    return net.forward_all(data=batch)["prob"]


def test_classifier_centre_crop_and_ten_crop_predictions(model) -> None:
    clf = caffe.Classifier(*model, image_dims=(8, 8), mean=np.array([0.1, 0.2, 0.3]),
                           raw_scale=255, channel_swap=(2, 1, 0))
    ims = images(5)
    resized = np.stack([io.resize_image(im, (8, 8)) for im in ims])
    centre = manual(clf, clf.transformer, resized[:, 1:7, 1:7])
    np.testing.assert_allclose(clf.predict(ims, oversample=False), centre, rtol=1e-5, atol=1e-6)
    ten = manual(clf, clf.transformer, io.oversample(resized, (6, 6))).reshape(5, 10, 3).mean(1)
    np.testing.assert_allclose(clf.predict(ims), ten, rtol=1e-5, atol=1e-6)


def test_detector_scores_windows_and_pads_context_with_the_mean(model, tmp_path) -> None:
    path = tmp_path / "im.png"
    Image.fromarray((images(1, (20, 24))[0] * 255).astype(np.uint8)).save(path)
    det = caffe.Detector(*model, mean=np.array([0.5, 0.25, 0.125]), raw_scale=1.0)
    windows = np.array([[0, 0, 10, 12], [5, 6, 19, 23]])
    out = det.detect_windows([(str(path), windows)])
    image = io.load_image(str(path))
    crops = [image[0:10, 0:12], image[5:19, 6:23]]
    expected = manual(det, det.transformer, crops)
    assert [d["filename"] for d in out] == [str(path)] * 2
    np.testing.assert_allclose(np.stack([d["prediction"] for d in out]), expected, rtol=1e-5,
                               atol=1e-6)
    det.configure_crop(1)
    padded = det.crop(image, np.array([0, 0, 10, 12]))
    assert padded.shape == (6, 6, 3)
    np.testing.assert_allclose(padded[0, 0], [0.5, 0.25, 0.125])


def test_timer_measures_milliseconds() -> None:
    timer = caffe.Timer()
    timer.start()
    sum(range(100000))
    timer.stop()
    assert timer.ms > 0 and not timer.running


def test_log_writes_caffe_log_lines(capfd) -> None:
    caffe.init_log()
    caffe.log("hello from pycaffe")
    assert "] hello from pycaffe" in capfd.readouterr().err
    caffe.init_log(1)
    caffe.log("not shown")
    assert "not shown" not in capfd.readouterr().err
    caffe.init_log()


def test_solver_count_and_rank_have_setters() -> None:
    assert (caffe.solver_count(), caffe.solver_rank()) == (1, 0)
    try:
        caffe.set_solver_count(3)
        caffe.set_solver_rank(2)
        assert (caffe.solver_count(), caffe.solver_rank()) == (3, 2)
        with pytest.raises(ValueError):
            caffe.set_solver_rank(3)
    finally:
        caffe.set_solver_count(1)
        caffe.set_solver_rank(0)
    caffe.set_multiprocess(False)


def test_nccl_reports_availability_and_uids_are_bytes() -> None:
    import torch
    assert caffe.has_nccl() == (torch.cuda.is_available() and torch.distributed.is_nccl_available())
    uid = caffe.NCCL.new_uid()
    assert isinstance(uid, bytes) and uid != caffe.NCCL.new_uid()
