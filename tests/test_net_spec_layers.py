"""caffe.net_spec: pycaffe's NetSpec / layers / params write the NetParameter pycaffe writes."""
from __future__ import annotations

import numpy as np
import pytest

import caffe
from caffe.errors import NetError
from caffe.model_io import parse_net_text
from caffe.net_spec import NetSpec, layers as L, param_name_dict, params as P, to_proto
from caffe.proto import caffe_pb2


def small_net() -> NetSpec:
    n = NetSpec()
    n.data, n.label = L.Input(ntop=2, input_param=dict(shape=[dict(dim=[4, 3, 8, 8]), dict(dim=[4])]))
    n.conv1 = L.Convolution(n.data, num_output=5, kernel_size=3, pad=1,
                            weight_filler=dict(type="xavier"),
                            param=[dict(lr_mult=1, decay_mult=1), dict(lr_mult=2, decay_mult=0)])
    n["conv1/bn"] = L.BatchNorm(n.conv1, in_place=True, use_global_stats=False)
    n.pool1 = L.Pooling(n["conv1/bn"], pool=P.Pooling.MAX, kernel_size=2, stride=2)
    n.ip = L.InnerProduct(n.pool1, num_output=3)
    n.loss = L.SoftmaxWithLoss(n.ip, n.label, loss_weight=2, loss_param=dict(ignore_label=-1))
    n.acc = L.Accuracy(n.ip, n.label, include=dict(phase=caffe.TEST), top_k=1)
    return n


def test_kwargs_go_to_the_type_param_or_the_layer():
    net = small_net().to_proto()
    conv = net.layer[1]
    assert conv.convolution_param.num_output == 5
    assert list(conv.convolution_param.kernel_size) == [3]
    assert conv.convolution_param.weight_filler.type == "xavier"
    assert [(p.lr_mult, p.decay_mult) for p in conv.param] == [(1, 1), (2, 0)]
    loss = net.layer[5]
    assert list(loss.loss_weight) == [2]
    assert loss.loss_param.ignore_label == -1
    acc = net.layer[6]
    assert acc.include[0].phase == caffe_pb2.TEST
    assert acc.accuracy_param.top_k == 1


def test_top_names_layer_names_and_in_place():
    net = small_net().to_proto()
    assert [l.name for l in net.layer] == ["data", "conv1", "conv1/bn", "pool1", "ip", "loss", "acc"]
    assert list(net.layer[0].top) == ["data", "label"]
    bn = net.layer[2]
    assert list(bn.bottom) == ["conv1"] and list(bn.top) == ["conv1"]
    assert list(net.layer[3].bottom) == ["conv1"]


def test_enum_by_params_object_or_by_name():
    assert P.Pooling.MAX == caffe_pb2.PoolingParameter.MAX
    assert P.Eltwise.SUM == caffe_pb2.EltwiseParameter.SUM
    n = NetSpec()
    n.data = L.Input(input_param=dict(shape=dict(dim=[1, 1, 4, 4])))
    n.pool = L.Pooling(n.data, pool="AVE", kernel_size=2)
    assert n.to_proto().layer[1].pooling_param.pool == caffe_pb2.PoolingParameter.AVE


def test_layers_come_after_their_bottoms_in_assignment_order():
    n = NetSpec()
    n.data = L.Input(input_param=dict(shape=dict(dim=[1, 2, 4, 4])))
    a = L.ReLU(n.data)
    b = L.Sigmoid(a)
    n.c = L.Eltwise(b, a)
    n.d = L.TanH(n.data)
    net = n.to_proto()
    assert [l.type for l in net.layer] == ["Input", "ReLU", "Sigmoid", "Eltwise", "TanH"]
    assert [l.name for l in net.layer[1:3]] == ["ReLU1", "Sigmoid1"]
    assert list(net.layer[3].bottom) == ["Sigmoid1", "ReLU1"]


def test_name_keyword_ntop_zero_and_module_to_proto():
    n = NetSpec()
    n.data = L.Input(input_param=dict(shape=dict(dim=[2, 3])))
    n.out = L.InnerProduct(n.data, num_output=4, name="fc_named")
    n.quiet = L.Silence(n.out, ntop=0)
    assert [l.name for l in to_proto(n.out).layer] == ["Input1", "fc_named"]
    net = n.to_proto()
    assert [l.name for l in net.layer] == ["data", "fc_named", "quiet"]
    assert list(net.layer[1].top) == ["out"] and not net.layer[2].top


def test_several_tops_and_item_access():
    n = NetSpec()
    n.data = L.Input(input_param=dict(shape=dict(dim=[2, 6])))
    n["a/x"], n["a/y"] = L.Slice(n.data, ntop=2, slice_point=[2], axis=1)
    assert "a/x" in n and n.keys() == ["data", "a/x", "a/y"]
    layer = n.to_proto().layer[1]
    assert list(layer.top) == ["a/x", "a/y"] and layer.name == "a/x"
    assert list(layer.slice_param.slice_point) == [2]


def test_param_name_dict_covers_types_by_message_name():
    names = param_name_dict()
    assert names["Convolution"] == "convolution"
    assert names["InnerProduct"] == "inner_product"
    assert names["BatchNorm"] == "batch_norm"
    assert names["ImageData"] == "image_data"
    assert names["Deconvolution"] == "convolution"


def test_unknown_keyword_and_bad_bottom_raise_net_error():
    n = NetSpec()
    n.data = L.Input(input_param=dict(shape=dict(dim=[1, 1])))
    n.bad = L.ReLU(n.data, no_such_field=3)
    with pytest.raises(NetError, match="no_such_field"):
        n.to_proto()
    with pytest.raises(TypeError, match="Top"):  # pycaffe's TypeError, also a CaffeError
        L.ReLU("data")
    with pytest.raises(NetError, match="NONEXISTENT"):
        spec = NetSpec()
        spec.data = L.Input(input_param=dict(shape=dict(dim=[1, 1, 2, 2])))
        spec.pool = L.Pooling(spec.data, pool="NONEXISTENT")
        spec.to_proto()
    with pytest.raises(AttributeError):
        NetSpec().missing


def test_text_round_trip_and_engine_build_and_training_step():
    n = small_net()
    text = str(n.to_proto())
    assert parse_net_text(text) == n.to_proto()
    net = caffe.Net(net_param=n.to_proto(), phase=caffe.TRAIN)
    assert net.blobs["pool1"].data.shape == (4, 5, 4, 4)
    rng = np.random.default_rng(0)
    net.blobs["data"].data[...] = rng.standard_normal((4, 3, 8, 8))
    net.blobs["label"].data[...] = [0, 1, 2, 1]
    loss = net.forward_backward()
    assert np.isfinite(loss) and loss > 0
    assert "acc" not in net.blobs
