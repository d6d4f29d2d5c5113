"""pycaffe's NetSpec: describe a net in Python and get its NetParameter (prototxt).

    from caffe.net_spec import NetSpec, layers as L, params as P
    n = NetSpec()
    n.data, n.label = L.Input(ntop=2, input_param=dict(shape=[dict(dim=[8, 3, 32, 32]), dict(dim=[8])]))
    n.conv1 = L.Convolution(n.data, num_output=16, kernel_size=3, weight_filler=dict(type="xavier"))
    n.pool1 = L.Pooling(n.conv1, pool=P.Pooling.MAX, kernel_size=2, stride=2)
    n.relu1 = L.ReLU(n.pool1, in_place=True)
    n.loss = L.SoftmaxWithLoss(n.relu1, n.label)
    print(n.to_proto())

``L.<Type>(*bottoms, **kwargs)`` makes one layer of that Caffe type. Keyword arguments:

* ``ntop`` (default 1) and ``in_place`` (top = bottom) shape the layer's tops; ``name`` sets the
  layer's name (default: the NetSpec attribute its first top is assigned to);
* keys ending in ``param`` (``param``, ``transform_param``, ``loss_param``, ...) go to the
  LayerParameter itself;
* any other key goes to the layer type's own ``<type>_param`` message when that message has such a
  field (``num_output`` -> ``convolution_param.num_output``), else to the LayerParameter
  (``loss_weight``, ``include``, ``exclude``, ``propagate_down``, ...).

Values may be scalars, lists (repeated fields), dicts (messages) and lists of dicts (repeated
messages); enum fields take the enum's number (``P.Pooling.MAX``) or its name (``"MAX"``).

Layers are written in the order of a depth-first walk from the NetSpec's tops in the order they
were assigned: each layer comes after the layers producing its bottoms. Tops are named after their
NetSpec attribute (or item key, which may hold characters such as ``/``); unnamed tops get
``<Type><count>``, as in pycaffe.
"""
from __future__ import annotations

from collections import Counter, OrderedDict
from typing import Any, Iterable

from google.protobuf import message as pb_message

from caffe.errors import CaffeTypeError, NetError
from caffe.proto import caffe_pb2

__all__ = ["NetSpec", "Top", "Function", "layers", "params", "to_proto", "param_name_dict",
           "assign_proto"]

# Layer types whose parameters live in a message not named after the type.
_PARAM_ALIASES = {"Deconvolution": "convolution", "Im2col": "convolution", "SoftmaxWithLoss": "softmax",
                   "RNN": "recurrent", "LSTM": "recurrent"}


def param_name_dict() -> dict[str, str]:
    """Map a layer type to the prefix of its ``*_param`` field: 'Convolution' -> 'convolution'.

    Derived from LayerParameter's ``*_param`` fields and their message types, so every type with a
    ``<Type>Parameter`` message is covered."""
    names: dict[str, str] = {}
    for field in caffe_pb2.LayerParameter.DESCRIPTOR.fields:
        if not field.name.endswith("_param") or field.message_type is None:
            continue
        type_name = field.message_type.name
        if type_name.endswith("Parameter"):
            names[type_name[: -len("Parameter")]] = field.name[: -len("_param")]
    names.update(_PARAM_ALIASES)
    return names


_PARAM_NAMES = param_name_dict()


def _enum_value(field, value: Any, where: str) -> Any:
    if isinstance(value, str) and field.enum_type is not None:
        enum_value = field.enum_type.values_by_name.get(value)
        if enum_value is None:
            choices = ", ".join(field.enum_type.values_by_name)
            raise NetError(f"{where}: '{value}' is not a value of {field.enum_type.name} "
                           f"(one of {choices})")
        return enum_value.number
    return value


def assign_proto(proto: pb_message.Message, name: str, value: Any, where: str = "") -> None:
    """Set field ``name`` of ``proto`` from a Python value (scalar, list, dict, list of dicts)."""
    where = f"{where}.{name}" if where else name
    field = proto.DESCRIPTOR.fields_by_name.get(name)
    if field is None:
        raise NetError(f"{where}: {proto.DESCRIPTOR.name} has no field '{name}'")
    is_message = field.message_type is not None
    if field.is_repeated:
        values = value if isinstance(value, (list, tuple)) else [value]
        container = getattr(proto, name)
        for item in values:
            if is_message:
                _fill_message(container.add(), item, where)
            else:
                container.append(_enum_value(field, item, where))
    elif is_message:
        _fill_message(getattr(proto, name), value, where)
    else:
        try:
            setattr(proto, name, _enum_value(field, value, where))
        except (TypeError, ValueError) as exc:
            raise NetError(f"{where}: cannot set {value!r} ({exc})") from exc


def _fill_message(msg: pb_message.Message, value: Any, where: str) -> None:
    if isinstance(value, pb_message.Message):
        msg.MergeFrom(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            assign_proto(msg, key, item, where)
    else:
        raise NetError(f"{where}: expected a dict or a {msg.DESCRIPTOR.name}, got {value!r}")


class Top:
    """One output blob of a Function; what NetSpec attributes hold and layers take as bottoms."""

    def __init__(self, fn: "Function", n: int) -> None:
        self.fn = fn
        self.n = n

    def to_proto(self) -> caffe_pb2.NetParameter:
        """The net that computes this top (its layer and everything it depends on)."""
        return to_proto(self)

    def _update(self, params: dict) -> None:
        self.fn._update(params)

    def _to_proto(self, layers: OrderedDict, names: dict, autonames: Counter) -> None:
        self.fn._to_proto(layers, names, autonames)


class Function:
    """One layer: its type, its bottoms (Tops) and its parameters; it owns ``ntop`` Tops."""

    def __init__(self, type_name: str, inputs: Iterable[Top], params: dict) -> None:
        self.type_name = type_name
        self.inputs = tuple(inputs)
        for index, item in enumerate(self.inputs):
            if not isinstance(item, Top):
                raise CaffeTypeError(f"{type_name} input {index} is not a Top (type is "
                                     f"{type(item)})")
        self.params = dict(params)
        self.ntop = int(self.params.pop("ntop", 1))
        self.in_place = bool(self.params.pop("in_place", False))
        if self.in_place and len(self.inputs) != self.ntop:
            raise NetError(f"{type_name}: in_place needs as many bottoms as tops "
                           f"({len(self.inputs)} bottoms, {self.ntop} tops)")
        self.tops = tuple(Top(self, n) for n in range(self.ntop))

    def _update(self, params: dict) -> None:
        self.params.update(params)

    def _get_name(self, names: dict, autonames: Counter) -> str:
        if self not in names:
            if self.ntop > 0:
                names[self] = self._get_top_name(self.tops[0], names, autonames)
            else:
                autonames[self.type_name] += 1
                names[self] = f"{self.type_name}{autonames[self.type_name]}"
        return names[self]

    def _get_top_name(self, top: Top, names: dict, autonames: Counter) -> str:
        if top not in names:
            autonames[top.fn.type_name] += 1
            names[top] = f"{top.fn.type_name}{autonames[top.fn.type_name]}"
        return names[top]

    def _to_proto(self, layers: OrderedDict, names: dict, autonames: Counter) -> None:
        if self in layers:
            return
        bottom_names = []
        for item in self.inputs:
            item._to_proto(layers, names, autonames)
            bottom_names.append(layers[item.fn].top[item.n])
        layer = caffe_pb2.LayerParameter()
        layer.type = self.type_name
        layer.bottom.extend(bottom_names)
        if self.in_place:
            layer.top.extend(layer.bottom)
        else:
            layer.top.extend(self._get_top_name(top, names, autonames) for top in self.tops)
        layer.name = str(self.params.get("name", self._get_name(names, autonames)))
        for key, value in self.params.items():
            if key != "name":
                self._assign(layer, key, value)
        layers[self] = layer

    def _assign(self, layer: caffe_pb2.LayerParameter, key: str, value: Any) -> None:
        where = f"layer '{layer.name}' ({self.type_name})"
        if not key.endswith("param"):
            prefix = _PARAM_NAMES.get(self.type_name)
            if prefix is not None:
                sub = getattr(layer, prefix + "_param")
                if key in sub.DESCRIPTOR.fields_by_name:
                    assign_proto(sub, key, value, f"{where} {prefix}_param")
                    return
        if key not in layer.DESCRIPTOR.fields_by_name:
            known = f"{_PARAM_NAMES[self.type_name]}_param" if self.type_name in _PARAM_NAMES else None
            raise NetError(f"{where}: unknown argument '{key}' (not a field of "
                           f"{known or 'any *_param of this type'} nor of LayerParameter)")
        assign_proto(layer, key, value, where)


def to_proto(*tops: Top) -> caffe_pb2.NetParameter:
    """The NetParameter computing ``tops`` (top names default to ``<Type><count>``)."""
    layers: OrderedDict = OrderedDict()
    autonames: Counter = Counter()
    for top in tops:
        top.fn._to_proto(layers, {}, autonames)
    net = caffe_pb2.NetParameter()
    net.layer.extend(layers.values())
    return net


class NetSpec:
    """An ordered collection of named Tops; ``to_proto()`` writes the net that computes them all.

    Attributes and items are the same: ``n.conv1 = ...`` or ``n["conv1/bn"] = ...``."""

    def __init__(self) -> None:
        super().__setattr__("tops", OrderedDict())

    def __setattr__(self, name: str, value: Top) -> None:
        self.tops[name] = value

    def __getattr__(self, name: str) -> Top:
        try:
            return self.tops[name]
        except KeyError:
            raise AttributeError(f"NetSpec has no top named '{name}'") from None

    def __setitem__(self, key: str, value: Top) -> None:
        self.__setattr__(key, value)

    def __getitem__(self, key: str) -> Top:
        return self.__getattr__(key)

    def __delitem__(self, key: str) -> None:
        del self.tops[key]

    def __contains__(self, key: str) -> bool:
        return key in self.tops

    def keys(self) -> list[str]:
        return list(self.tops.keys())

    def vals(self) -> list[Top]:
        return list(self.tops.values())

    def to_proto(self) -> caffe_pb2.NetParameter:
        names = {top: name for name, top in self.tops.items()}
        autonames: Counter = Counter()
        layers: OrderedDict = OrderedDict()
        for top in self.tops.values():
            top._to_proto(layers, names, autonames)
        net = caffe_pb2.NetParameter()
        net.layer.extend(layers.values())
        return net


class Layers:
    """``layers.Convolution(...)`` makes a Function of type "Convolution" and returns its top(s)."""

    def __getattr__(self, type_name: str):
        if type_name.startswith("__"):
            raise AttributeError(type_name)

        def layer_fn(*args: Top, **kwargs: Any):
            fn = Function(type_name, args, kwargs)
            if fn.ntop == 0:
                return fn
            if fn.ntop == 1:
                return fn.tops[0]
            return fn.tops

        layer_fn.__name__ = type_name
        return layer_fn


class Parameters:
    """``params.Pooling.MAX`` is ``caffe_pb2.PoolingParameter.MAX``: enum values by layer type."""

    def __getattr__(self, type_name: str):
        if type_name.startswith("__"):
            raise AttributeError(type_name)
        message = getattr(caffe_pb2, type_name + "Parameter", None)
        if message is None:
            raise AttributeError(f"caffe_pb2 has no {type_name}Parameter")

        class _Param:
            def __getattr__(self, value_name: str) -> Any:
                return getattr(message, value_name)

        return _Param()


layers = Layers()
params = Parameters()
