"""Where this process stands in a job of several processes, read from its launcher's environment.

Two launchers are understood:

* ``torchrun`` (and anything that sets PyTorch's ``env://`` variables): ``RANK``, ``WORLD_SIZE``,
  ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``;
* a task of a SLURM ``srun`` step: ``SLURM_PROCID``, ``SLURM_STEP_NUM_TASKS``, ``SLURM_LOCALID``;
  the rendezvous host is ``MASTER_ADDR`` if set, else the first host of ``SLURM_STEP_NODELIST``
  (or ``SLURM_JOB_NODELIST``), the port ``MASTER_PORT`` if set, else 29500 (torchrun's default).
  A batch script itself (no ``srun``) has no step task count, so it is not mistaken for one rank
  of many.

The same variables give the share of a sharded tool (``--shard K/N``: ``sse-preprocess``,
``sse-predict``, ``extract_features``): ``Shard.select`` keeps every N-th input from the K-th, so N
processes given the same inputs split them without overlap and the split does not depend on the
machine. A tool whose output cannot be shared between writers (a database) writes share K of N
into ``OUT/shard-K-of-N``; ``shard_parts(OUT)`` finds the complete set for the reader that merges
them."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence, TypeVar

from .errors import CaffeError

DEFAULT_MASTER_PORT = 29500

T = TypeVar("T")


@dataclass(frozen=True)
class ProcessGroupEnv:
    """This process's place in a job: global rank, number of ranks, rank on its machine, and the
    address of the rank-0 rendezvous (``env://``)."""
    rank: int
    world_size: int
    local_rank: int
    master_addr: str  # '' when not given
    master_port: int  # 0 when not given
    launcher: str     # 'torchrun' or 'slurm'

    def export(self, environ: dict | None = None) -> None:
        """Write the ``env://`` variables that ``torch.distributed`` reads (the rendezvous must
        be known: a sharded tool needs none, training does)."""
        if not self.master_addr or not self.master_port:
            raise CaffeError(f"rank {self.rank} of {self.world_size} ({self.launcher}) has no "
                             "rendezvous: set MASTER_ADDR and MASTER_PORT")
        env = os.environ if environ is None else environ
        env.update(RANK=str(self.rank), WORLD_SIZE=str(self.world_size),
                   LOCAL_RANK=str(self.local_rank), MASTER_ADDR=self.master_addr,
                   MASTER_PORT=str(self.master_port))


def _int(environ: Mapping[str, str], name: str) -> int:
    value = environ[name]
    try:
        return int(value)
    except ValueError:
        raise CaffeError(f"environment variable {name}={value!r} is not an integer") from None


def first_host(nodelist: str) -> str:
    """The first host of a SLURM node list: 'gpu[07-09,12],cpu1' -> 'gpu07'."""
    m = re.match(r"\s*([^,[]+)(?:\[([^],-]+))?", nodelist)
    if not m or not m.group(1):
        raise CaffeError(f"cannot read the first host of the SLURM node list {nodelist!r}")
    return m.group(1) + (m.group(2) or "")


def _check(rank: int, world: int, local: int, names: str) -> None:
    if world < 1 or not 0 <= rank < world or local < 0:
        raise CaffeError(f"{names}: rank {rank}, world size {world}, local rank {local} are not "
                         "a valid place in a job (need 0 <= rank < world size, local rank >= 0)")


def launch_environment(environ: Mapping[str, str] | None = None) -> ProcessGroupEnv | None:
    """The job this process was launched into by torchrun or srun, or None when it runs alone
    (no launcher variables, or a world of one process)."""
    env = os.environ if environ is None else environ
    if "RANK" in env and "WORLD_SIZE" in env:
        rank, world = _int(env, "RANK"), _int(env, "WORLD_SIZE")
        local = _int(env, "LOCAL_RANK") if "LOCAL_RANK" in env else rank
        _check(rank, world, local, "RANK / WORLD_SIZE / LOCAL_RANK")
        if world == 1:
            return None
        port = _int(env, "MASTER_PORT") if "MASTER_PORT" in env else 0
        return ProcessGroupEnv(rank, world, local, env.get("MASTER_ADDR", ""), port, "torchrun")
    if "SLURM_PROCID" in env and "SLURM_STEP_NUM_TASKS" in env:
        rank, world = _int(env, "SLURM_PROCID"), _int(env, "SLURM_STEP_NUM_TASKS")
        local = _int(env, "SLURM_LOCALID") if "SLURM_LOCALID" in env else 0
        _check(rank, world, local, "SLURM_PROCID / SLURM_STEP_NUM_TASKS / SLURM_LOCALID")
        if world == 1:
            return None
        addr = env.get("MASTER_ADDR")
        if not addr:
            nodes = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST")
            if not nodes:
                raise CaffeError("a SLURM step of several tasks without MASTER_ADDR, "
                                 "SLURM_STEP_NODELIST or SLURM_JOB_NODELIST: no rendezvous host")
            addr = first_host(nodes)
        port = _int(env, "MASTER_PORT") if "MASTER_PORT" in env else DEFAULT_MASTER_PORT
        return ProcessGroupEnv(rank, world, local, addr, port, "slurm")
    return None


@dataclass(frozen=True)
class Shard:
    """Share ``index`` of ``count`` of a tool's inputs (0-based), and where that came from."""
    index: int = 0
    count: int = 1
    source: str = "default"

    def select(self, items: Sequence[T]) -> list[T]:
        """Items index, index + count, index + 2*count, ... (all of them for 0/1)."""
        return list(items[self.index::self.count])

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


_PART = re.compile(r"shard-(\d+)-of-(\d+)")


def shard_part(folder: str | os.PathLike, shard: Shard) -> Path:
    """Where share K of N of an output named ``folder`` goes: ``folder/shard-K-of-N``."""
    return Path(folder) / f"shard-{shard.index}-of-{shard.count}"


def shard_parts(folder: str | os.PathLike) -> list[Path] | None:
    """The N parts ``folder/shard-K-of-N`` in share order, or None when ``folder`` holds none;
    a CaffeError when parts are missing or were made for different N."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    found = {}
    for entry in folder.iterdir():
        m = _PART.fullmatch(entry.name)
        if m:
            found[(int(m.group(1)), int(m.group(2)))] = entry
    if not found:
        return None
    counts = sorted({n for _, n in found})
    if len(counts) > 1:
        raise CaffeError(f"{folder}: shard parts of different splits ("
                         + ", ".join(f"of-{n}" for n in counts) + "); keep the parts of one run")
    count = counts[0]
    missing = [k for k in range(count) if (k, count) not in found]
    if missing:
        raise CaffeError(f"{folder}: shard parts {', '.join(f'shard-{k}-of-{count}' for k in missing)} "
                         "are missing (not finished, or not written to this folder)")
    return [found[(k, count)] for k in range(count)]


def parse_shard(text: str) -> Shard:
    """``K/N`` -> Shard(K, N) with 0 <= K < N."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not m:
        raise CaffeError(f"--shard must be K/N (share K of N, counted from 0), got {text!r}")
    index, count = int(m.group(1)), int(m.group(2))
    if not 0 <= index < count:
        raise CaffeError(f"--shard {text}: K must be in 0..N-1 (shares are counted from 0)")
    return Shard(index, count, "--shard")


def resolve_shard(flag: str | None, environ: Mapping[str, str] | None = None) -> Shard:
    """The share of this process: ``--shard K/N`` if given, else the launcher's rank and world
    size (torchrun or srun), else all of the inputs."""
    if flag:
        return parse_shard(flag)
    job = launch_environment(environ)
    if job is None:
        return Shard()
    return Shard(job.rank, job.world_size, job.launcher)


def add_shard_argument(parser, what: str) -> None:
    """The ``--shard K/N`` option of a sharded tool, on an argparse parser."""
    parser.add_argument(
        "--shard", default="", metavar="K/N",
        help=f"process share K of N of the {what} (K from 0); default: RANK/WORLD_SIZE of "
             "torchrun or SLURM_PROCID/SLURM_STEP_NUM_TASKS of srun, else everything")


__all__ = ["ProcessGroupEnv", "Shard", "launch_environment", "first_host", "parse_shard",
           "resolve_shard", "add_shard_argument", "shard_part", "shard_parts", "DEFAULT_MASTER_PORT"]
