"""Global mode, device and random seed, as pycaffe's set_mode_cpu/set_mode_gpu/set_device/
set_random_seed."""
from __future__ import annotations

import torch

_state = {"mode": "CPU", "device_id": 0, "seed": None}


def set_mode_cpu() -> None:
    _state["mode"] = "CPU"


def set_mode_gpu() -> None:
    """Run nets built from now on on CUDA (device chosen by ``set_device``)."""
    if not torch.cuda.is_available():
        raise RuntimeError("set_mode_gpu: no CUDA device is available (PyTorch sees none)")
    _state["mode"] = "GPU"


def set_device(device_id: int) -> None:
    _state["device_id"] = int(device_id)
    if torch.cuda.is_available():
        torch.cuda.set_device(int(device_id))


def set_random_seed(seed: int) -> None:
    """Seed the fillers, dropout and data shuffling of nets built from now on."""
    _state["seed"] = int(seed)
    torch.manual_seed(int(seed))


def mode() -> str:
    return _state["mode"]


def current_device() -> torch.device:
    if _state["mode"] == "GPU":
        return torch.device("cuda", _state["device_id"])
    return torch.device("cpu")


def net_generator() -> torch.Generator:
    """A CPU generator for a new net: seeded from ``set_random_seed`` if given, else random."""
    g = torch.Generator()
    if _state["seed"] is None:
        g.seed()
    else:
        g.manual_seed(_state["seed"])
    return g


_shard = {"rank": 0, "world_size": 1, "test": False}


def set_data_shard(rank: int, world_size: int, test: bool = False) -> None:
    """Tell data layers built from now on which share of each global batch this process reads:
    rank r of w reads items ((k*w + r)*B ...) for its batch k. TRAIN nets read their share
    (several-process training, where only the root tests); with ``test`` TEST nets do too
    (a sharded ``extract_features``)."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside world size {world_size}")
    _shard.update(rank=int(rank), world_size=int(world_size), test=bool(test))


def data_shard(phase: int | None = None) -> tuple[int, int]:
    """(rank, world_size) for the data layers of a net of ``phase`` (0 TRAIN, 1 TEST; None: the
    shard as set): (0, 1), the whole stream, for a TEST net unless TEST nets are sharded."""
    if phase not in (None, 0) and not _shard["test"]:
        return 0, 1
    return _shard["rank"], _shard["world_size"]
