"""The start of a job of several ranks (``caffe train`` under torchrun or srun, or ``--gpu 0,1``),
bounded in time and checked, so that a job that cannot train ends on every rank with one line and
a non-zero exit instead of a silent wait, an abort inside gloo or a traceback:

* rank 0 opens the rendezvous (a TCPStore at MASTER_ADDR:MASTER_PORT) and the others wait for it;
  then every rank waits for all the others to join. Both waits last at most the rendezvous timeout:
  ``caffe train --rendezvous_timeout=SECONDS``, else the environment variable
  ``CAFFE_RENDEZVOUS_TIMEOUT`` (for ranks a launcher starts), else 300 s. A rank that never
  started is named ("rank 1 did not join the rendezvous ...").
* Every rank posts a fingerprint of what it is about to train: the train net as read (a hash per
  layer and one of the rest) and the SolverParameter (device id and net file path aside: the net's
  content counts). All ranks compare them with rank 0's and end, when they differ, naming the
  first layer or the solver fields that differ.
* A rank that fails (a missing file before training, a NaN loss or an out-of-memory during it)
  posts its error; the others end naming it rather than with the collective that broke.

Rank 0 hosts the store: when it ends on its own error, it keeps the store open a few seconds so
that the others can read why."""
from __future__ import annotations

import hashlib
import json
import math
import os
import socket
import time
from datetime import timedelta
from typing import Mapping

import torch.distributed as dist
from google.protobuf import text_format

from .errors import CaffeError, JobError
from .launch import ProcessGroupEnv
from .proto import caffe_pb2

DEFAULT_TIMEOUT_S = 300.0
TIMEOUT_ENV = "CAFFE_RENDEZVOUS_TIMEOUT"
TIMEOUT_HELP = "--rendezvous_timeout or CAFFE_RENDEZVOUS_TIMEOUT"
_KEY = "caffe/"
_POLL_S = 0.05
_GRACE_S = 5.0


def rendezvous_timeout(flag: str | float | None = None,
                       environ: Mapping[str, str] | None = None) -> float:
    """Seconds a rank waits at the rendezvous: ``flag`` if given, else ``CAFFE_RENDEZVOUS_TIMEOUT``,
    else ``DEFAULT_TIMEOUT_S``."""
    env = os.environ if environ is None else environ
    for value, name in ((flag, "--rendezvous_timeout"), (env.get(TIMEOUT_ENV), TIMEOUT_ENV)):
        if value is None or value == "":
            continue
        try:
            seconds = float(value)
        except ValueError:
            seconds = math.nan
        if not 0 < seconds < math.inf:
            raise CaffeError(f"{name} must be a positive number of seconds, got {value!r}")
        return seconds
    return DEFAULT_TIMEOUT_S


def _digest(message) -> str:
    return hashlib.sha256(message.SerializeToString(deterministic=True)).hexdigest()[:16]


def fingerprint(param: caffe_pb2.SolverParameter) -> dict:
    """What a rank is about to train, small enough for the store: the train net's source, a hash
    of each layer (with its name) and of the net without layers, and the solver's fields as text
    (the net source and device id aside)."""
    from .solvers.nets import TRAIN_NET_SOURCES, train_net_parameter
    net, source = train_net_parameter(param)
    header = caffe_pb2.NetParameter()
    header.CopyFrom(net)
    del header.layer[:]
    solver = caffe_pb2.SolverParameter()
    solver.CopyFrom(param)
    for name in (*TRAIN_NET_SOURCES, "device_id"):
        solver.ClearField(name)
    fields = {}
    for field, _ in solver.ListFields():
        single = caffe_pb2.SolverParameter()
        single.MergeFrom(solver)
        for other, _ in solver.ListFields():
            if other.name != field.name:
                single.ClearField(other.name)
        fields[field.name] = text_format.MessageToString(single, as_one_line=True)
    return {"net": source, "header": _digest(header),
            "layers": [[layer.name, _digest(layer)] for layer in net.layer], "solver": fields}


def _net_difference(root: dict, other: dict, rank: int) -> str | None:
    if root["layers"] == other["layers"] and root["header"] == other["header"]:
        return None
    where = f"rank {rank}'s net ({other['net']}) differs from rank 0's ({root['net']})"
    for i, ((name0, hash0), (name, digest)) in enumerate(zip(root["layers"], other["layers"])):
        if name0 != name:
            return f"{where}: layer {i + 1} is '{name0}' on rank 0, '{name}' on rank {rank}"
        if hash0 != digest:
            return f"{where} at layer '{name}'"
    if len(root["layers"]) != len(other["layers"]):
        return (f"{where}: {len(root['layers'])} layers on rank 0, {len(other['layers'])} "
                f"on rank {rank}")
    return f"{where} outside its layers (name, inputs, state)"


def differences(prints: list[dict]) -> str | None:
    """What the first rank whose fingerprint is not rank 0's trains differently, or None."""
    root = prints[0]
    for rank, other in enumerate(prints[1:], start=1):
        parts = []
        net = _net_difference(root, other, rank)
        if net:
            parts.append(net)
        solver = sorted(k for k in set(root["solver"]) | set(other["solver"])
                        if root["solver"].get(k) != other["solver"].get(k))
        if solver:
            parts.append(f"rank {rank}'s solver differs from rank 0's in {', '.join(solver)}")
        if parts:
            return "; ".join(parts)
    return None


def _ranks(ranks: list[int]) -> str:
    return ("rank " if len(ranks) == 1 else "ranks ") + ", ".join(map(str, ranks))


def short_reason(exc: BaseException) -> str:
    """The first sentence of a torch.distributed error, without its source location."""
    text = " ".join(str(exc).split())
    if text.startswith("[") and "] " in text:
        text = text.split("] ", 1)[1]
    return text.split(". ", 1)[0].rstrip(".") or type(exc).__name__


class Rendezvous:
    """This rank's connection to the job's TCPStore: the checks before training and the errors
    the ranks post for each other."""

    def __init__(self, job: ProcessGroupEnv, timeout_s: float,
                 environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.job, self.timeout_s = job, timeout_s
        self.where = f"{job.master_addr}:{job.master_port}"
        self.who = f"rank {job.rank} of {job.world_size}"
        # torchrun's agent on the first node holds the store (its workers are all clients) and
        # keeps it over restarts: keys go under the run and the restart
        agent = env.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
        self.hosts = job.rank == 0 and not agent
        self.holder = "torchrun's agent on the first node" if agent else "rank 0"
        store = self._open()
        if agent:
            store = dist.PrefixStore(f"caffe/{env.get('TORCHELASTIC_RUN_ID', '')}/"
                                     f"{env.get('TORCHELASTIC_RESTART_COUNT', '0')}", store)
        self.store = store
        self.phase = "start"

    def _within(self) -> str:
        return f"within {self.timeout_s:g} s ({TIMEOUT_HELP})"

    def _open(self) -> dist.Store:
        job, timeout = self.job, timedelta(seconds=self.timeout_s)
        if not self.hosts:
            self._wait_for_store()
        try:
            return dist.TCPStore(job.master_addr, job.master_port, job.world_size, self.hosts,
                                 timeout, wait_for_workers=False, multi_tenant=self.hosts)
        except (RuntimeError, OSError) as exc:
            what = "open" if self.hosts else "join"
            raise JobError(f"{self.who}: cannot {what} the rendezvous at {self.where}: "
                           f"{short_reason(exc)}") from None

    def _wait_for_store(self) -> None:
        """Wait until the store accepts connections (a plain socket: torch's client logs each
        failed try with a stack trace)."""
        deadline = time.monotonic() + self.timeout_s
        while True:
            left = deadline - time.monotonic()
            try:
                with socket.create_connection((self.job.master_addr, self.job.master_port),
                                              timeout=max(0.1, min(1.0, left))):
                    return
            except socket.gaierror as exc:
                raise JobError(f"{self.who}: cannot find the rendezvous host "
                               f"{self.job.master_addr}: {exc.strerror}") from None
            except OSError:
                if left <= 0:
                    raise JobError(f"{self.who}: {self.holder} did not open the rendezvous at "
                                   f"{self.where} {self._within()}; was it started, with this "
                                   "MASTER_ADDR and MASTER_PORT?") from None
                time.sleep(min(_POLL_S * 4, max(left, 0)))

    def _reachable(self) -> bool:
        """Whether the store still accepts connections (asked with a plain socket: torch's
        client logs a stack trace when its connection breaks)."""
        try:
            address = (self.job.master_addr, self.job.master_port)
            with socket.create_connection(address, timeout=1.0):
                return True
        except OSError:
            return False

    def _count(self, name: str) -> int:
        return int(self.store.add(_KEY + name, 0))

    def _gone(self) -> JobError:
        return JobError(f"{self.who}: {self.holder} ended before training started (the rendezvous "
                        f"at {self.where} closed)")

    def posted_failure(self) -> tuple[int, str] | None:
        """(rank, error) of the first rank that posted a failure, or None."""
        if not self._count("failed"):
            return None
        for rank in range(self.job.world_size):
            key = f"{_KEY}failed/{rank}"
            if rank != self.job.rank and self.store.check([key]):
                return rank, self.store.get(key).decode("utf-8", "replace")
        return None

    def agree(self, fingerprint: dict) -> None:
        """Post this rank's fingerprint, wait for every rank's, and end with a JobError naming
        a rank that is missing, that failed, or that trains another net or solver."""
        try:
            self.store.set(f"{_KEY}fingerprint/{self.job.rank}", json.dumps(fingerprint))
            self.store.add(_KEY + "joined", 1)
            self._wait_for_all()
            prints = [json.loads(self.store.get(f"{_KEY}fingerprint/{rank}"))
                      for rank in range(self.job.world_size)]
        except JobError:
            raise
        except RuntimeError as exc:
            if self.hosts:
                raise JobError(f"{self.who}: the rendezvous at {self.where} failed: "
                               f"{short_reason(exc)}") from None
            raise self._gone() from None
        diff = differences(prints)
        self._done()
        if diff:
            self.linger()
            raise JobError(f"{self.who}: the ranks were given different nets or solvers: {diff}; "
                           "start every rank with the same ones")
        self.phase = "train"

    def _wait_for_all(self) -> None:
        deadline = time.monotonic() + self.timeout_s
        while True:
            failed = self.posted_failure()
            if failed is not None:
                self._done()
                raise JobError(f"{self.who}: rank {failed[0]} failed: {failed[1]}")
            if self._count("joined") >= self.job.world_size:
                return
            if time.monotonic() > deadline:
                missing = [rank for rank in range(self.job.world_size)
                           if not self.store.check([f"{_KEY}fingerprint/{rank}"])]
                reason = (f"{_ranks(missing)} did not join the rendezvous at {self.where} "
                          f"{self._within()}")
                self.post_failure(reason)
                self.linger()
                raise JobError(f"{self.who}: {reason}")
            time.sleep(_POLL_S)

    def _done(self) -> None:
        """Tell rank 0 that this rank no longer reads the store in this phase (start, train)."""
        if self.job.rank != 0:
            self.store.add(f"{_KEY}done/{self.phase}", 1)

    def post_failure(self, reason: str) -> None:
        """Post this rank's error for the others (best effort: the store may be gone)."""
        try:
            self.store.set_timeout(timedelta(seconds=_GRACE_S))
            self.store.set(f"{_KEY}failed/{self.job.rank}", reason)
            self.store.add(_KEY + "failed", 1)
            self._done()
        except RuntimeError:
            return

    def linger(self) -> None:
        """Rank 0 after its own failure: keep the store open until the other ranks have read it
        (a few seconds at most: a rank that was killed never reads)."""
        if not self.hosts:
            return
        deadline = time.monotonic() + min(_GRACE_S, self.timeout_s)
        try:
            others = self._count("joined") - 1 if self.phase == "start" else self.job.world_size - 1
            while time.monotonic() < deadline and self._count(f"done/{self.phase}") < others:
                time.sleep(_POLL_S)
        except RuntimeError:
            return

    def peer_lost(self, reason: str) -> JobError:
        """The error of this rank once a collective failed: the failure a peer posted, or that a
        peer ended without a word."""
        gone = JobError(f"{self.who}: {self.holder} ended during training (killed, or its machine "
                        f"or the network failed; the rendezvous at {self.where} is gone): {reason}")
        if not self.hosts and not self._reachable():
            return gone
        try:
            self.store.set_timeout(timedelta(seconds=_GRACE_S))
            deadline = time.monotonic() + 1.0
            failed = self.posted_failure()
            while failed is None and time.monotonic() < deadline:
                time.sleep(_POLL_S)
                failed = self.posted_failure()
            self._done()
        except RuntimeError:
            return gone
        if failed is not None:
            return JobError(f"{self.who}: rank {failed[0]} failed: {failed[1]}")
        return JobError(f"{self.who}: a peer rank ended during training (killed, or its machine or "
                        f"the network failed): {reason}")
