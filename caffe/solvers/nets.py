"""The train net and test nets a SolverParameter describes, built as Caffe's Solver::InitTrainNet
and InitTestNets build them: exactly one train net source (net, net_param, train_net,
train_net_param); test nets from test_net_param, then test_net files, then one more copy of the
generic net (net or net_param) per remaining test_iter entry. Each net's state is the phase, then
the net's own ``state``, then the solver's train_state / test_state, merged in that order."""
from __future__ import annotations

import os
from typing import Callable

from .. import model_io
from ..errors import SolverError
from ..layers.base import TEST, TRAIN
from ..net import Net
from ..proto import caffe_pb2

Log = Callable[[str, str], None]


def _read_net(path: str, what: str):
    if not os.path.exists(path):
        raise SolverError(f"{what} '{path}' not found (paths in a solver are relative to the "
                          f"current directory {os.getcwd()}, as in Caffe)")
    return model_io.read_net(path)


def _merged_state(phase: int, net_param, override) -> caffe_pb2.NetState:
    state = caffe_pb2.NetState()
    state.phase = phase
    state.MergeFrom(net_param.state)
    if override is not None:
        state.MergeFrom(override)
    return state


def _build(net_param, state) -> Net:
    net_param.state.CopyFrom(state)
    return Net(net_param=net_param, phase=state.phase, level=state.level, stages=list(state.stage))


def load_weights(net: Net, weights: str, log: Log) -> None:
    """Load comma-separated caffemodels into ``net`` (Caffe's LoadNetWeights)."""
    for name in weights.split(","):
        name = name.strip()
        log("solver.cpp:72", f"Finetuning from {name}")
        net.copy_from(name)


TRAIN_NET_SOURCES = ("net", "net_param", "train_net", "train_net_param")


def train_net_parameter(param, log: Log | None = None) -> tuple[caffe_pb2.NetParameter, str]:
    """The train net a solver names, as read from its file or copied from the solver, and where
    it came from (the file's path, or the solver field's name)."""
    sources = [f for f in TRAIN_NET_SOURCES if param.HasField(f)]
    if len(sources) != 1:
        raise SolverError("the solver must specify exactly one train net with one of: net, "
                          f"net_param, train_net, train_net_param (found {len(sources)}: "
                          f"{', '.join(sources) or 'none'})")
    source = sources[0]
    if source in ("net", "train_net"):
        path = getattr(param, source)
        if log is not None:
            log("solver.cpp:102",
                f"Creating training net from {source.replace('_', ' ')} file: {path}")
        return _read_net(path, f"{source} file"), path
    if log is not None:
        log("solver.cpp:97", f"Creating training net specified in {source}.")
    net_param = caffe_pb2.NetParameter()
    net_param.CopyFrom(getattr(param, source))
    return net_param, source


def build_train_net(param, log: Log) -> Net:
    net_param, _ = train_net_parameter(param, log)
    state = _merged_state(TRAIN, net_param, param.train_state if param.HasField("train_state") else None)
    net = _build(net_param, state)
    for weights in param.weights:
        load_weights(net, weights, log)
    return net


def build_test_nets(param, log: Log) -> list[Net]:
    generic = int(param.HasField("net")) + int(param.HasField("net_param"))
    explicit = len(param.test_net_param) + len(param.test_net)
    if generic > 1:
        raise SolverError("both net_param and net are given; keep one")
    if (generic and len(param.test_iter) < explicit) or (not generic and len(param.test_iter) != explicit):
        raise SolverError(f"test_iter must be specified for each test network ({explicit} test "
                          f"nets, {len(param.test_iter)} test_iter values)")
    count = explicit + (len(param.test_iter) - explicit if generic else 0)
    if len(param.test_state) and len(param.test_state) != count:
        raise SolverError(f"test_state must be unspecified or specified once per test net "
                          f"({count} test nets, {len(param.test_state)} test_state)")
    if count and param.test_interval <= 0:
        raise SolverError(f"{count} test net(s) need test_interval > 0")
    specs: list[tuple[str, object]] = []
    for p in param.test_net_param:
        specs.append(("test_net_param", p))
    for path in param.test_net:
        specs.append((f"test_net file: {path}", _read_net(path, "test_net file")))
    for _ in range(count - explicit):
        if param.HasField("net_param"):
            specs.append(("net_param", param.net_param))
        else:
            specs.append((f"net file: {param.net}", _read_net(param.net, "net file")))
    nets = []
    for i, (source, p) in enumerate(specs):
        net_param = caffe_pb2.NetParameter()
        net_param.CopyFrom(p)
        state = _merged_state(TEST, net_param, param.test_state[i] if len(param.test_state) else None)
        log("solver.cpp:190", f"Creating test net (#{i}) specified by {source}")
        net = _build(net_param, state)
        for weights in param.weights:
            load_weights(net, weights, log)
        nets.append(net)
    return nets
