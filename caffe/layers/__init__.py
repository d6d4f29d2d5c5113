"""Layer types, one module per family, each class registered under its Caffe type name."""
from . import conv, data, hdf5_data, inner_product, input, loss, neuron, normalization, pooling, python, structure  # noqa: F401
from .base import TEST, TRAIN, Layer, create_layer, layer_type_list, register

__all__ = ["Layer", "TRAIN", "TEST", "create_layer", "layer_type_list", "register"]
