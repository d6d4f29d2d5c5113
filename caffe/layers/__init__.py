"""Layer types, one module per family, each class registered under its Caffe type name.

As in pycaffe, ``caffe.layers`` also serves NetSpec: ``from caffe import layers as L`` then
``L.Convolution(bottom, ...)`` (capitalised names go to ``caffe.net_spec.layers``)."""
from . import (conv, data, dummy_data, hdf5_data, inner_product, input, loss,  # noqa: F401
               neuron, normalization, pooling, python, structure)
from .base import TEST, TRAIN, Layer, create_layer, layer_type_list, register

__all__ = ["Layer", "TRAIN", "TEST", "create_layer", "layer_type_list", "register"]


def __getattr__(name: str):
    if name[:1].isupper():
        from ..net_spec import layers as net_spec_layers
        return getattr(net_spec_layers, name)
    raise AttributeError(f"module 'caffe.layers' has no attribute '{name}'")
