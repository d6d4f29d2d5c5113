"""sse.shipped: a model folder scores uint8 faces like a hand-made forward of its deploy net; the
test-time augmentations average the views they promise; an ensemble file is read relative to
itself and applies its weights; bad folders and files are named."""
from __future__ import annotations

import json

import numpy as np
import pytest

import caffe
from sse.classes import CLASS_NAMES
from sse.fusion import fuse_models
from sse.shipped import Ensemble, EmotionModel, ModelError, batch_sizes, load

DEPLOY = """name: "tiny"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 1 dim: 12 dim: 12 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
  convolution_param { num_output: 4 kernel_size: 3 weight_filler { type: "gaussian" std: 0.05 } } }
layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" }
layer { name: "fc" type: "InnerProduct" bottom: "conv" top: "fc"
  inner_product_param { num_output: 7 weight_filler { type: "gaussian" std: 0.05 } } }
layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }
"""
FER_ORDER = ["Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral"]


def _model_dir(path, seed, classes=CLASS_NAMES, mean=100.0):
    path.mkdir()
    (path / "deploy.prototxt").write_text(DEPLOY)
    caffe.set_random_seed(seed)
    caffe.Net(str(path / "deploy.prototxt"), caffe.TEST).save(str(path / "model.caffemodel"))
    (path / "model.json").write_text(json.dumps({"input_size": 12, "channels": 1, "mean_value": [mean],
                                                 "classes": list(classes), "tencrop_pad": 2}))
    return path


def _plain(path, faces, mean=100.0):
    net = caffe.Net(str(path / "deploy.prototxt"), caffe.TEST, weights=str(path / "model.caffemodel"))
    x = faces.astype(np.float32)[:, None] - np.float32(mean)
    net.blobs["data"].reshape(*x.shape)
    return net.forward(data=x)["prob"].copy()


@pytest.fixture()
def faces():
    return np.random.default_rng(5).integers(0, 256, (9, 12, 12)).astype(np.uint8)


def test_single_crop_is_the_deploy_forward_of_mean_subtracted_faces(tmp_path, faces):
    folder = _model_dir(tmp_path / "m", 1)
    np.testing.assert_allclose(load(folder).probs(faces), _plain(folder, faces), atol=1e-6)



@pytest.mark.parametrize("n, batch, sizes", [(100, 128, [64, 32, 4]), (300, 128, [128, 128, 32, 8, 4]),
                                             (128, 128, [128]), (0, 128, []), (3, 1, [1, 1, 1])])
def test_faces_are_scored_in_full_batches_then_powers_of_two(n, batch, sizes):
    assert batch_sizes(n, batch) == sizes


def test_any_number_of_faces_reaches_the_net_in_a_few_batch_shapes(tmp_path, monkeypatch):
    """However many faces a chunk holds, the net sees batches of 8 or a power of two below it
    (the engine and oneDNN keep state per input shape), and each face's scores are those of the
    plain forward."""
    folder = _model_dir(tmp_path / "m", 4)
    model = EmotionModel.from_dir(folder, batch=8)
    seen = set()
    forward = model._fast.forward

    def spy(**inputs):
        seen.add(len(inputs["data"]))
        return forward(**inputs)
    monkeypatch.setattr(model._fast, "forward", spy)
    rng = np.random.default_rng(9)
    for n in range(1, 40):
        faces = rng.integers(0, 256, (n, 12, 12)).astype(np.uint8)
        np.testing.assert_allclose(model.probs(faces), _plain(folder, faces), rtol=1e-4, atol=1e-6)
    assert seen == {1, 2, 4, 8}

def test_mirror_and_tencrop_average_their_views(tmp_path, faces):
    folder = _model_dir(tmp_path / "m", 2)
    model = EmotionModel.from_dir(folder)
    mirror = (_plain(folder, faces) + _plain(folder, faces[:, :, ::-1].copy())) / 2
    np.testing.assert_allclose(model.probs(faces, "mirror"), mirror, atol=1e-6)
    views = model.views(faces, "tencrop")
    assert len(views) == 10 and all(v.shape == faces.shape for v in views)
    assert np.array_equal(views[0], faces)          # the centre crop of the reflected padding
    assert np.array_equal(views[5], faces[:, :, ::-1])
    assert np.array_equal(views[1][:, 2:, 2:], faces[:, :10, :10])   # top-left corner crop
    tencrop = sum(_plain(folder, np.ascontiguousarray(v)) for v in views) / 10
    np.testing.assert_allclose(model.probs(faces, "tencrop"), tencrop, atol=1e-6)


def test_outputs_come_back_in_the_toolkit_class_order(tmp_path, faces):
    folder = _model_dir(tmp_path / "m", 3, classes=FER_ORDER)
    raw = _plain(folder, faces)
    probs = load(folder).probs(faces)
    for j, name in enumerate(CLASS_NAMES):
        np.testing.assert_allclose(probs[:, j], raw[:, FER_ORDER.index(name)], atol=1e-6)


def test_colour_and_other_sizes_are_converted(tmp_path):
    folder = _model_dir(tmp_path / "m", 4)
    bgr = np.random.default_rng(0).integers(0, 256, (3, 30, 30, 3)).astype(np.uint8)
    assert load(folder).probs(bgr).shape == (3, 7)
    with pytest.raises(ModelError, match="N x H x W"):
        load(folder).probs(np.zeros((2, 12), np.uint8))


def test_an_ensemble_file_names_folders_beside_it_and_applies_its_weights(tmp_path, faces):
    a, b = _model_dir(tmp_path / "a", 6), _model_dir(tmp_path / "b", 7)
    (tmp_path / "ens.json").write_text(json.dumps({"members": [{"model": "a", "weight": 3},
                                                               {"model": "b", "weight": 1}]}))
    ensemble = load(tmp_path / "ens.json")
    assert isinstance(ensemble, Ensemble)
    expected = fuse_models([_plain(a, faces), _plain(b, faces)], [3, 1])
    np.testing.assert_allclose(ensemble.probs(faces), expected, atol=1e-6)


def test_bad_folders_and_files_are_named(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="empty.*deploy.prototxt"):
        load(tmp_path / "empty")
    (tmp_path / "bad.json").write_text('{"members": [{"weight": 1}]}')
    with pytest.raises(ModelError, match="bad.json.*members"):
        load(tmp_path / "bad.json")
    with pytest.raises(ModelError, match="neither a model folder"):
        load(tmp_path / "nothing")
    folder = _model_dir(tmp_path / "m", 8)
    with pytest.raises(ModelError, match="test-time augmentation 'flip'"):
        load(folder).probs(np.zeros((1, 12, 12), np.uint8), "flip")
