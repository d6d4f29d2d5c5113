"""Finding where a net went non-finite: the first layer (in net order) whose parameters or whose
output holds NaN or inf, found by replaying the last batch layer by layer without gradients."""
from __future__ import annotations

import torch

from ..net import Net


def first_nonfinite_layer(net: Net) -> str:
    """A sentence naming the first layer with a non-finite parameter or output for the batch the
    net last read. The net's parameters (BatchNorm statistics included) are left as they were."""
    saved = [p.detach().clone() for p in net.learnable_params]
    try:
        return _replay(net)
    finally:
        with torch.no_grad():
            for p, s in zip(net.learnable_params, saved):
                p.copy_(s)


def _replay(net: Net) -> str:
    with torch.no_grad():
        for i, layer in enumerate(net.modules):
            name = net._layer_names[i]
            for j, p in enumerate(layer.blobs):
                if not torch.isfinite(p).all():
                    return f"layer '{name}' ({layer.type}) has a non-finite parameter blob {j}"
            if not net.bottom_names[name]:
                tops = net.top_names[name]
            else:
                net._forward_layer(i)
                tops = [t for t in net.top_names[name]]
            for t in tops:
                if not torch.isfinite(net._data[t]).all():
                    return f"layer '{name}' ({layer.type}) produced a non-finite top '{t}'"
    return "no layer output is non-finite when the batch is replayed"
