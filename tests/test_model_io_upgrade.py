"""Caffe's upgrades on load: V1 nets, legacy input fields, V1 data transformation fields, old
BatchNorm params, legacy solver_type, default snapshot_prefix."""
from __future__ import annotations

import numpy as np
import pytest

from caffe import model_io
from caffe.errors import ParseError
from caffe.proto import caffe_pb2

V1_NET = """
name: "v1net"
layers {
  name: "data"  type: DATA  top: "data"  top: "label"
  data_param { source: "train_lmdb" backend: LMDB batch_size: 8 scale: 0.00390625 mean_file: "mean.binaryproto" crop_size: 24 mirror: true }
  include { phase: TRAIN }
}
layers {
  name: "conv1"  type: CONVOLUTION  bottom: "data"  top: "conv1"
  blobs_lr: 1  blobs_lr: 2  weight_decay: 1  weight_decay: 0
  param: "conv1_w"  param: "conv1_b"
  convolution_param { num_output: 4 kernel_size: 3 weight_filler { type: "xavier" } }
}
layers { name: "relu1" type: RELU bottom: "conv1" top: "conv1" }
layers { name: "pool1" type: POOLING bottom: "conv1" top: "pool1" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layers { name: "ip" type: INNER_PRODUCT bottom: "pool1" top: "ip" blobs_lr: 1 inner_product_param { num_output: 7 } }
layers { name: "loss" type: SOFTMAX_LOSS bottom: "ip" bottom: "label" top: "loss" loss_weight: 0.5 }
layers { name: "acc" type: ACCURACY bottom: "ip" bottom: "label" top: "acc" exclude { phase: TRAIN } }
"""


def test_v1_layers_become_current_layers_with_string_types():
    net = model_io.parse_net_text(V1_NET)
    assert not net.layers
    assert [(l.name, l.type) for l in net.layer] == [
        ("data", "Data"), ("conv1", "Convolution"), ("relu1", "ReLU"), ("pool1", "Pooling"),
        ("ip", "InnerProduct"), ("loss", "SoftmaxWithLoss"), ("acc", "Accuracy")]
    conv = net.layer[1]
    assert list(conv.bottom) == ["data"] and list(conv.top) == ["conv1"]
    assert conv.convolution_param.num_output == 4
    assert conv.convolution_param.weight_filler.type == "xavier"
    assert net.layer[3].pooling_param.kernel_size == 2
    assert list(net.layer[5].loss_weight) == [0.5]
    assert net.layer[0].include[0].phase == caffe_pb2.TRAIN
    assert net.layer[6].exclude[0].phase == caffe_pb2.TRAIN


def test_v1_blobs_lr_weight_decay_and_param_names_become_param_specs():
    conv = model_io.parse_net_text(V1_NET).layer[1]
    assert [(p.name, p.lr_mult, p.decay_mult) for p in conv.param] == [
        ("conv1_w", 1.0, 1.0), ("conv1_b", 2.0, 0.0)]
    ip = model_io.parse_net_text(V1_NET).layer[4]
    assert len(ip.param) == 1 and ip.param[0].lr_mult == 1.0 and not ip.param[0].HasField("decay_mult")


def test_v1_data_layer_transformation_fields_move_to_transform_param():
    data = model_io.parse_net_text(V1_NET).layer[0]
    assert data.transform_param.scale == pytest.approx(1 / 256)
    assert data.transform_param.mean_file == "mean.binaryproto"
    assert data.transform_param.crop_size == 24
    assert data.transform_param.mirror is True
    for legacy in ("scale", "mean_file", "crop_size", "mirror"):
        assert not data.data_param.HasField(legacy)
    assert data.data_param.source == "train_lmdb" and data.data_param.batch_size == 8


def test_v1_caffemodel_is_upgraded_with_its_blobs(tmp_path):
    weights = np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2)
    old = caffe_pb2.NetParameter(name="old")
    v1 = old.layers.add(name="conv", type=caffe_pb2.V1LayerParameter.CONVOLUTION)
    v1.blobs.add().CopyFrom(model_io.array_to_blobproto(weights))
    legacy_blob = v1.blobs.add(num=1, channels=1, height=1, width=2)
    legacy_blob.data.extend([0.5, -0.5])
    path = tmp_path / "old.caffemodel"
    model_io.write_binary(old, path)
    net = model_io.read_binary_net(path)
    assert [(l.name, l.type) for l in net.layer] == [("conv", "Convolution")]
    np.testing.assert_array_equal(model_io.blobproto_to_array(net.layer[0].blobs[0]), weights)
    assert model_io.blob_shape(net.layer[0].blobs[1]) == (1, 1, 1, 2)


def test_every_v1_type_maps_to_a_type_name():
    names = caffe_pb2.V1LayerParameter.LayerType.keys()
    for name in names:
        value = caffe_pb2.V1LayerParameter.LayerType.Value(name)
        assert value in model_io.V1_TYPE_NAMES
        assert (model_io.V1_TYPE_NAMES[value] == "") == (name == "NONE")


def test_legacy_input_dim_becomes_first_input_layer():
    net = model_io.parse_net_text("""
input: "data"
input_dim: 1 input_dim: 3 input_dim: 224 input_dim: 224
input: "label"
input_dim: 1 input_dim: 1 input_dim: 1 input_dim: 1
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" inner_product_param { num_output: 2 } }
""")
    assert not net.input and not net.input_dim and not net.input_shape
    first = net.layer[0]
    assert (first.name, first.type, list(first.top)) == ("input", "Input", ["data", "label"])
    assert [list(s.dim) for s in first.input_param.shape] == [[1, 3, 224, 224], [1, 1, 1, 1]]
    assert net.layer[1].name == "ip"


def test_legacy_input_shape_becomes_input_layer():
    net = model_io.parse_net_text(
        'input: "data" input_shape { dim: 10 dim: 1 dim: 128 dim: 128 }\n'
        'layer { name: "r" type: "ReLU" bottom: "data" top: "r" }')
    assert [l.type for l in net.layer] == ["Input", "ReLU"]
    assert list(net.layer[0].input_param.shape[0].dim) == [10, 1, 128, 128]


def test_legacy_input_without_shape_is_dropped_as_caffe_does():
    net = model_io.parse_net_text('input: "data"\nlayer { name: "r" type: "ReLU" bottom: "data" top: "r" }')
    assert [l.type for l in net.layer] == ["ReLU"] and not net.input


def test_legacy_input_dim_count_mismatch_is_an_error():
    with pytest.raises(ParseError, match="input_dim"):
        model_io.parse_net_text('input: "data" input_dim: 1 input_dim: 3', source="deploy.prototxt")


def test_batchnorm_with_three_params_gets_zero_learning_rates():
    net = model_io.parse_net_text(
        'layer { name: "bn" type: "BatchNorm" bottom: "x" top: "x" param { lr_mult: 1 } param { lr_mult: 1 } '
        'param { lr_mult: 1 decay_mult: 2 } }')
    assert [(p.lr_mult, p.decay_mult) for p in net.layer[0].param] == [(0, 0)] * 3


def test_net_with_both_layer_and_layers_is_refused():
    with pytest.raises(ParseError, match="both 'layer'"):
        model_io.parse_net_text('layer { name: "a" type: "ReLU" }\nlayers { name: "b" type: RELU }')


def test_v0_net_is_refused_with_clear_error():
    with pytest.raises(ParseError, match="V0"):
        model_io.parse_net_text('layers { layer { name: "conv" type: "conv" num_output: 2 } }')


@pytest.mark.parametrize("legacy, name", [("SGD", "SGD"), ("NESTEROV", "Nesterov"), ("ADAGRAD", "AdaGrad"),
                                          ("RMSPROP", "RMSProp"), ("ADADELTA", "AdaDelta"), ("ADAM", "Adam")])
def test_legacy_solver_type_becomes_type_string(legacy, name):
    solver = model_io.parse_solver_text(f'net: "n.prototxt" solver_type: {legacy}')
    assert solver.type == name and not solver.HasField("solver_type")


def test_solver_with_both_solver_type_and_type_is_refused():
    with pytest.raises(ParseError, match="solver_type"):
        model_io.parse_solver_text('solver_type: ADAM type: "Adam"')


def test_snapshot_prefix_defaults_to_solver_path_without_extension(tmp_path):
    path = tmp_path / "my_solver.prototxt"
    path.write_text('net: "n.prototxt" base_lr: 0.01')
    assert model_io.read_solver(path).snapshot_prefix == str(tmp_path / "my_solver")


def test_snapshot_prefix_directory_gets_solver_stem(tmp_path):
    snaps = tmp_path / "snaps"
    snaps.mkdir()
    path = tmp_path / "s.prototxt"
    path.write_text(f'net: "n.prototxt" snapshot_prefix: "{snaps}"')
    assert model_io.read_solver(path).snapshot_prefix == str(snaps / "s")
