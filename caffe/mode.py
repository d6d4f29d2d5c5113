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
