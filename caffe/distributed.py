"""Training in several processes: ``caffe train --gpu 0,1`` spawns one process per device on this
machine (torch multiprocessing), and a launcher (torchrun, SLURM's srun; ``caffe.launch``) starts
one ``caffe train`` per rank on any number of machines. Either way each rank runs ``train_rank``:
the prototxt's batch_size and its share of the data
(``caffe.mode.set_data_shard``), the parameters broadcast from rank 0 at the start and the
gradients averaged with an all-reduce before every update (NCCL on CUDA, gloo on CPU), as Caffe's
NCCL solver does. Rank 0 logs, tests and snapshots. A signal's action (stop / snapshot) on any
rank is agreed by all ranks at the same iteration.

A snapshot does not depend on the number of ranks (weights, history, iteration), so it resumes
with any number of them; the data stream goes on at item iteration x iter_size x (batch_size x
ranks of the resumed job), exactly where the interrupted job stopped when the global batch
(batch_size x ranks) is kept.

The ranks meet at a bounded rendezvous that checks they train the same net and solver
(``caffe.rendezvous``); a collective that fails because a peer ended raises a ``PeerLostError``,
which the rank reports in one line naming the peer's own error when it posted one."""
from __future__ import annotations

import os
import signal
import socket
from contextlib import contextmanager
from typing import Callable, Iterator, Sequence

import torch
import torch.distributed as dist

from . import mode
from .errors import JobError, SolverError
from .launch import ProcessGroupEnv
from .proto import caffe_pb2
from .rendezvous import Rendezvous, fingerprint, rendezvous_timeout, short_reason

_ACTION_CODES = {"none": 0, "snapshot": 1, "stop": 2}
_CODE_ACTIONS = {v: k for k, v in _ACTION_CODES.items()}


def parse_gpus(flag: str) -> list[int]:
    """``--gpu`` as Caffe reads it: '' (none), 'all', or comma-separated device ids."""
    flag = flag.strip()
    if not flag:
        return []
    if flag == "all":
        return list(range(torch.cuda.device_count()))
    try:
        return [int(s) for s in flag.split(",")]
    except ValueError:
        raise SolverError(f"--gpu must be 'all' or device ids separated by ',', got '{flag}'") from None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PeerLostError(JobError):
    """A collective that failed: a peer rank ended (killed, failed) or cannot be reached."""


@contextmanager
def collective(what: str) -> Iterator[None]:
    """Turn the error of a failed collective (gloo and NCCL raise RuntimeErrors, some with a
    page of advice) into a PeerLostError that names ``what`` failed and why, in a few words."""
    try:
        yield
    except RuntimeError as exc:
        raise PeerLostError(f"{what} failed: {short_reason(exc)}") from None


def reduced_parameters(net) -> list[torch.Tensor]:
    """The parameters whose gradients the ranks average: the learnable blobs that learn (lr_mult
    not 0; BatchNorm statistics do not). Their float32 bytes are each iteration's all-reduce."""
    return [p for p, lr in zip(net.learnable_params, net.params_lr) if p.requires_grad and lr != 0]


class GradientAllReduce:
    """Averages the parameter gradients of a net over the process group in one flat buffer."""

    def __init__(self, solver) -> None:
        self.params = reduced_parameters(solver.net)
        self.world = dist.get_world_size()

    def __call__(self) -> None:
        grads = []
        for p in self.params:
            if p.grad is None:
                p.grad = torch.zeros_like(p.data)
            grads.append(p.grad)
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        with collective("the all-reduce of the gradients"):
            dist.all_reduce(flat)
        flat.div_(self.world)
        offset = 0
        for g in grads:
            n = g.numel()
            g.copy_(flat[offset:offset + n].view_as(g))
            offset += n


def broadcast_parameters(net) -> None:
    """Give every rank rank 0's parameters (all learnable blobs, BatchNorm statistics too)."""
    with torch.no_grad(), collective("the broadcast of rank 0's parameters"):
        for p in net.learnable_params:
            dist.broadcast(p.data, src=0)


def agreed_action(local: Callable[[], str], device: torch.device) -> Callable[[], str]:
    """An action function that all ranks call together: the strongest action any rank asks."""
    def action() -> str:
        code = torch.tensor([_ACTION_CODES[local()]], dtype=torch.int64, device=device)
        with collective("the agreement on signals"):
            dist.all_reduce(code, op=dist.ReduceOp.MAX)
        return _CODE_ACTIONS[int(code.item())]
    return action


class SignalFlags:
    """SIGINT / SIGHUP handlers that record a signal; the action function reports the configured
    effect of each received signal once (Caffe's SignalHandler)."""

    def __init__(self, sigint_effect: str = "stop", sighup_effect: str = "snapshot") -> None:
        for name, effect in (("sigint_effect", sigint_effect), ("sighup_effect", sighup_effect)):
            if effect not in _ACTION_CODES:
                raise SolverError(f"Invalid signal effect \"{effect}\" was specified for --{name} "
                                  "(stop, snapshot or none)")
        self.effects = {signal.SIGINT: sigint_effect, signal.SIGHUP: sighup_effect}
        self.pending: list[int] = []

    def install(self) -> None:
        for sig in self.effects:
            signal.signal(sig, self._handle)

    def _handle(self, signum, frame) -> None:
        self.pending.append(signum)

    def __call__(self) -> str:
        while self.pending:
            effect = self.effects[self.pending.pop(0)]
            if effect != "none":
                return effect
        return "none"

    def snapshot_only(self) -> str:
        """The action while testing in a several-process run: snapshots are taken at once; a
        stop stays pending until all ranks agree on it after the iteration's update."""
        for i, sig in enumerate(self.pending):
            if self.effects[sig] == "snapshot":
                del self.pending[i]
                return "snapshot"
        return "none"


def train_rank(param, job: ProcessGroupEnv, device: int | None = None, resume: str | None = None,
               effects: tuple[str, str] = ("stop", "snapshot"),
               setup: Callable[[object], None] | None = None,
               timeout_s: float | None = None) -> None:
    """Run one rank of a training job: meet the other ranks at the job's rendezvous (at most
    ``timeout_s``, default ``rendezvous_timeout()``) and check that all train the same net and
    solver, join the process group (NCCL on CUDA ``device``, gloo on the CPU when it is None),
    read this rank's shard of the data, and train with averaged gradients. Rank 0 logs, tests and
    snapshots; ``setup`` may add observers to the solver before training. Both ``caffe train
    --gpu 0,1`` (spawned processes) and a launcher's processes (torchrun, srun) run this. A JobError
    says in one line why the job cannot go on: a rank missing, a rank that failed or ended, ranks
    with different nets or solvers."""
    from .tools.cli_util import describe_error
    job.export()
    if device is not None:
        mode.set_device(device)
        mode.set_mode_gpu()
    meeting = Rendezvous(job, rendezvous_timeout() if timeout_s is None else timeout_s)
    try:
        mine = fingerprint(param)
    except Exception as exc:
        meeting.post_failure(describe_error(exc))
        meeting.linger()
        raise
    meeting.agree(mine)
    try:
        with collective("joining the process group"):
            dist.init_process_group("nccl" if device is not None else "gloo", store=meeting.store,
                                    rank=job.rank, world_size=job.world_size)
        _train(param, job, resume, effects, setup)
    except PeerLostError as exc:
        _leave_process_group()
        raise meeting.peer_lost(str(exc)) from None
    except BaseException as exc:
        meeting.post_failure(describe_error(exc))
        _leave_process_group()
        meeting.linger()
        raise
    _leave_process_group()


def _leave_process_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def _train(param, job: ProcessGroupEnv, resume: str | None, effects: tuple[str, str],
           setup: Callable[[object], None] | None) -> None:
    from .solver import get_solver
    flags = SignalFlags(*effects)
    flags.install()
    mode.set_data_shard(job.rank, job.world_size)
    solver = get_solver(param, is_root=job.rank == 0)
    broadcast_parameters(solver.net)
    solver.add_callback(on_gradients_ready=GradientAllReduce(solver))
    solver.set_action_function(agreed_action(flags, mode.current_device()),
                               test_fn=flags.snapshot_only)
    if setup is not None:
        setup(solver)
    solver.solve(resume)


def _worker(rank: int, world: int, param_bytes: bytes, devices: Sequence[int] | None, port: int,
            resume: str | None, effects: tuple[str, str], cwd: str,
            timeout_s: float | None) -> None:
    os.chdir(cwd)
    param = caffe_pb2.SolverParameter()
    param.ParseFromString(param_bytes)
    job = ProcessGroupEnv(rank, world, rank, "127.0.0.1", port, "spawn")
    train_rank(param, job, devices[rank] if devices else None, resume, effects, timeout_s=timeout_s)


def train_parallel(param, world_size: int, devices: Sequence[int] | None = None,
                   resume: str | None = None, sigint_effect: str = "stop",
                   sighup_effect: str = "snapshot", timeout_s: float | None = None) -> None:
    """Train ``param`` (a SolverParameter) in ``world_size`` processes: on the CUDA ``devices``
    (NCCL) or, with devices None, on the CPU (gloo). Returns when all processes have finished;
    a process that fails or ends ends them all with a SolverError naming it."""
    if devices is not None and len(devices) != world_size:
        raise SolverError(f"{world_size} processes for {len(devices)} devices")
    SignalFlags(sigint_effect, sighup_effect)
    import torch.multiprocessing as mp
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGHUP)}
    try:
        mp.spawn(_worker, nprocs=world_size, join=True,
                 args=(world_size, param.SerializeToString(), list(devices) if devices else None,
                       _free_port(), resume, (sigint_effect, sighup_effect), os.getcwd(),
                       timeout_s))
    except mp.ProcessRaisedException as exc:
        raise SolverError(f"a training process failed: {str(exc).strip().splitlines()[-1]}") from None
    except mp.ProcessExitedException as exc:
        how = f"signal {exc.signal_name}" if exc.signal_name else f"exit code {exc.exit_code}"
        raise SolverError(f"training process {exc.error_index} ended with {how}") from None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
