"""Layer types, one module per family, each class registered under its Caffe type name.

As in pycaffe, ``caffe.layers`` also serves NetSpec: ``from caffe import layers as L`` then
``L.Convolution(bottom, ...)`` (capitalised names go to ``caffe.net_spec.layers``)."""
from . import (conv, data, dummy_data, embed, hdf5_data, hdf5_output, im2col,  # noqa: F401
               inner_product, input, log_loss, loss, metric_loss, mvn, neuron, normalization,
               parameter, pooling, python, recurrent, reduction, selection, spp, structure,
               window_data)
from .base import TEST, TRAIN, Layer, create_layer, layer_type_list, register

__all__ = ["Layer", "TRAIN", "TEST", "create_layer", "layer_type_list", "register"]


def __getattr__(name: str):
    if name[:1].isupper():
        from ..net_spec import layers as net_spec_layers
        return getattr(net_spec_layers, name)
    raise AttributeError(f"module 'caffe.layers' has no attribute '{name}'")
