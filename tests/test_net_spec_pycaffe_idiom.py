"""pycaffe's NetSpec idiom ``from caffe import layers as L, params as P`` builds nets that run."""
from __future__ import annotations

import numpy as np

import caffe
from caffe import layers as L
from caffe import params as P


def test_layers_and_params_imported_from_caffe_write_a_net_that_builds():
    n = caffe.NetSpec()
    n.data, n.label = L.Input(ntop=2, input_param=dict(shape=[dict(dim=[2, 1, 8, 8]), dict(dim=[2])]))
    n.conv = L.Convolution(n.data, kernel_size=3, num_output=4, weight_filler=dict(type="xavier"))
    n.pool = L.Pooling(n.conv, pool=P.Pooling.MAX, kernel_size=2, stride=2)
    n.ip = L.InnerProduct(n.pool, num_output=3, weight_filler=dict(type="xavier"))
    n.loss = L.SoftmaxWithLoss(n.ip, n.label)
    proto = n.to_proto()
    assert [layer.type for layer in proto.layer] == ["Input", "Convolution", "Pooling", "InnerProduct",
                                                     "SoftmaxWithLoss"]
    net = caffe.Net(net_param=proto, phase=caffe.TRAIN)
    out = net.forward(data=np.ones((2, 1, 8, 8)), label=np.array([0, 2]))
    assert net.blobs["pool"].shape == (2, 4, 3, 3)
    assert np.isfinite(out["loss"])
