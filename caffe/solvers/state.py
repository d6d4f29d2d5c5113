"""Snapshots and resumption: ``{prefix}_iter_{N}.caffemodel`` + ``.solverstate`` written atomically
(a run killed while writing leaves the previous snapshot whole), and a SolverState read back with
its history blobs checked against the net's learnable parameters."""
from __future__ import annotations

import os

import numpy as np
import torch

from .. import model_io
from ..errors import SolverError
from ..proto import caffe_pb2


def snapshot_filename(prefix: str, iteration: int, extension: str) -> str:
    return f"{prefix}_iter_{iteration}{extension}"


def check_prefix_writable(prefix: str) -> None:
    """Caffe's CheckSnapshotWritePermissions: the prefix's directory must exist and be writable."""
    directory = os.path.dirname(prefix) or "."
    if not os.path.isdir(directory) or not os.access(directory, os.W_OK):
        raise SolverError(f"Cannot write to snapshot prefix '{prefix}'. Make sure that the "
                          "directory exists and is writable.")


def write_state(path: str, iteration: int, learned_net: str, current_step: int,
                history: list[torch.Tensor]) -> None:
    state = caffe_pb2.SolverState(iter=iteration, learned_net=learned_net,
                                  current_step=current_step)
    for h in history:
        state.history.append(model_io.array_to_blobproto(h.detach().cpu().numpy()))
    model_io.write_binary(state, path)


def read_state(path: str, history: list[torch.Tensor]) -> tuple[int, str, int, list[np.ndarray]]:
    """(iter, learned_net, current_step, history arrays) of a .solverstate, the history checked
    blob by blob against the shapes of ``history``."""
    if path.endswith(".h5"):
        raise SolverError(f"{path}: HDF5 solver states are not supported; use a binary .solverstate")
    state = model_io.read_solverstate(path)
    if len(state.history) != len(history):
        raise SolverError(f"{path}: Incorrect length of history blobs: the state has "
                          f"{len(state.history)}, this solver and net need {len(history)} (was it "
                          "written for another net or solver type?)")
    arrays = []
    for i, (bp, h) in enumerate(zip(state.history, history)):
        arr = model_io.blobproto_to_array(bp)
        if arr.size != h.numel():
            raise SolverError(f"{path}: history blob {i} has shape {arr.shape}, the net's "
                              f"parameter has {tuple(h.shape)} (the snapshot is of another net)")
        arrays.append(arr.reshape(tuple(h.shape)))
    learned = state.learned_net if state.HasField("learned_net") else ""
    if learned and not os.path.exists(learned):
        beside = os.path.join(os.path.dirname(path), os.path.basename(learned))
        if os.path.exists(beside):
            learned = beside
    return state.iter, learned, state.current_step, arrays
