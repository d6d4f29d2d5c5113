"""The ``caffe`` command (Caffe's tools/caffe.cpp) with its flags:

    caffe train --solver=S [--weights=W[,W2] | --snapshot=T] [--gpu=0|0,1|all]
                [--sigint_effect=stop|snapshot|none] [--sighup_effect=...] [--stage=a,b] [--level=N]
                [--plot=curves.png] [--no_progress] [--rendezvous_timeout=SECONDS]
    caffe test --model=M --weights=W [--iterations=50] [--gpu=0]
    caffe time --model=M [--iterations=50] [--phase=TRAIN|TEST] [--gpu=0]
    caffe device_query [--gpu=0]

Flags take one or two dashes and the ``--flag = value`` spacing of the original scripts. Logs are
Caffe's glog lines on stderr; errors print as one line (``--traceback`` for the traceback).

Started by torchrun or srun (``caffe.launch``), ``caffe train`` is one rank of a job over several
machines: gloo on the CPU, or NCCL on its local device with ``--gpu`` or a GPU solver_mode (the one
device it sees, or ``--gpu``'s entry at its local rank); rank 0 logs, tests and snapshots. The ranks
wait for each other at most ``--rendezvous_timeout`` seconds (else ``$CAFFE_RENDEZVOUS_TIMEOUT``,
else 300) and check that they train the same net and solver; a rank missing, failed or ended, or
ranks that differ, end every rank with one line naming it and exit code 1 (``caffe.rendezvous``)."""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Sequence

import numpy as np
import torch

from .. import mode, model_io
from ..errors import CaffeError, SolverError
from ..layers.base import TEST, TRAIN
from ..solvers import glog
from .cli_util import run_main

COMMANDS = ("train", "test", "time", "device_query")

USAGE = """caffe: command line brew
usage: caffe <command> <args>

commands:
  train           train or finetune a model
  test            score a model
  device_query    show GPU diagnostic information
  time            benchmark model execution time
"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="caffe", description=USAGE,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=COMMANDS)

    def flag(name: str, **kw) -> None:
        p.add_argument(f"--{name}", f"-{name}", **kw)

    flag("solver", default="", help="the solver definition protocol buffer text file")
    flag("model", default="", help="the model definition protocol buffer text file")
    flag("weights", default="", help="pretrained weights to start from, separated by ','")
    flag("snapshot", default="", help="a .solverstate to resume training from")
    flag("gpu", default="", help="device ids separated by ',', or 'all'; none: CPU")
    flag("iterations", type=int, default=50, help="iterations of test and time (train: unused, "
                                                  "as in Caffe; max_iter comes from the solver)")
    flag("phase", default="", help="TRAIN or TEST (time only; default TRAIN)")
    flag("level", type=int, default=0, help="the net's level")
    flag("stage", default="", help="the net's stages, separated by ','")
    flag("sigint_effect", default="stop", help="on SIGINT: snapshot, stop or none")
    flag("sighup_effect", default="snapshot", help="on SIGHUP: snapshot, stop or none")
    p.add_argument("--no_progress", "--no-progress", action="store_true",
                   help="no progress bar, even on a terminal")
    flag("rendezvous_timeout", default="", metavar="SECONDS",
         help="train with several ranks: how long a rank waits for the others to start (default: "
              "$CAFFE_RENDEZVOUS_TIMEOUT, else 300)")
    p.add_argument("--plot", default="", metavar="PNG",
                   help="train: redraw the training curves into this PNG as training goes")
    return p


def _stages(flag: str) -> list[str]:
    return [s for s in flag.split(",") if s]


def _use_devices(gpus: list[int]) -> None:
    if not gpus:
        glog.log("caffe.cpp:197", "Use CPU.")
        mode.set_mode_cpu()
        return
    if not torch.cuda.is_available():
        raise CaffeError(f"--gpu {','.join(map(str, gpus))} was given but PyTorch sees no CUDA "
                         "device; leave --gpu out to run on the CPU")
    for g in gpus:
        if g >= torch.cuda.device_count():
            raise CaffeError(f"--gpu {g}: there are only {torch.cuda.device_count()} CUDA devices")
    glog.log("caffe.cpp:220", "Using GPUs " + ", ".join(map(str, gpus)))
    for g in gpus:
        glog.log("caffe.cpp:225", f"GPU {g}: {torch.cuda.get_device_name(g)}")
    mode.set_device(gpus[0])
    mode.set_mode_gpu()


def _launcher_device(gpus: list[int], job) -> int | None:
    """The CUDA device of a launched rank: the one device it sees, or ``--gpu``'s entry at its
    local rank; None (gloo on the CPU) without ``--gpu``."""
    if not gpus:
        return None
    if len(gpus) == 1:
        return gpus[0]
    if job.local_rank >= len(gpus):
        raise CaffeError(f"local rank {job.local_rank} has no device in --gpu "
                         f"{','.join(map(str, gpus))} ({len(gpus)} devices for this machine's ranks)")
    return gpus[job.local_rank]


def _train_setup(args):
    """What ``caffe train`` adds to a solver: the progress bar switch and the live plot (root)."""
    def setup(solver) -> None:
        solver.show_progress = solver.show_progress and not args.no_progress
        if args.plot and solver.is_root:
            from .plot_log import LivePlot
            solver.add_observer(LivePlot(args.plot, title=os.path.basename(args.solver)))
    return setup


def train(args) -> int:
    from ..distributed import SignalFlags, parse_gpus, train_parallel, train_rank
    from ..launch import launch_environment
    from ..rendezvous import rendezvous_timeout
    from ..solver import get_solver
    job = launch_environment()
    if job is not None:
        glog.set_enabled(job.rank == 0)
    if not args.solver:
        raise SolverError("Need a solver definition to train (--solver)")
    if args.snapshot and args.weights:
        raise SolverError("Give a snapshot to resume training or weights to finetune but not both.")
    param = model_io.read_solver(args.solver)
    param.train_state.level = args.level
    param.train_state.stage.extend(_stages(args.stage))
    gpu_flag = args.gpu
    if not gpu_flag and param.HasField("solver_mode") and param.solver_mode == param.GPU:
        if torch.cuda.is_available():  # a launched rank takes the GPU of its local rank
            gpu_flag = "all" if job is not None else str(param.device_id)
        else:
            glog.log("caffe.cpp:207", "solver_mode is GPU but PyTorch sees no CUDA device; "
                     "training on the CPU", "W")
    gpus = parse_gpus(gpu_flag)
    _use_devices(gpus)
    if gpus:
        param.device_id = gpus[0]
    if args.snapshot:
        del param.weights[:]
    elif args.weights:
        del param.weights[:]
        param.weights.append(args.weights)
    setup = _train_setup(args)
    if job is not None:
        device = _launcher_device(gpus, job)
        timeout_s = rendezvous_timeout(args.rendezvous_timeout)
        glog.log("caffe.cpp:239", f"Starting Optimization: rank {job.rank} of {job.world_size} "
                 f"({job.launcher}, rendezvous {job.master_addr}:{job.master_port}, "
                 f"{'NCCL' if device is not None else 'gloo'}), waiting at most {timeout_s:g} s "
                 "for the other ranks")
        train_rank(param, job, device, args.snapshot or None,
                   (args.sigint_effect, args.sighup_effect), setup, timeout_s)
        glog.log("caffe.cpp:250", "Optimization Done.")
        return 0
    if len(gpus) > 1:
        glog.log("caffe.cpp:239", "Starting Optimization")
        train_parallel(param, len(gpus), gpus, args.snapshot or None, args.sigint_effect,
                       args.sighup_effect, rendezvous_timeout(args.rendezvous_timeout))
        glog.log("caffe.cpp:250", "Optimization Done.")
        return 0
    flags = SignalFlags(args.sigint_effect, args.sighup_effect)
    flags.install()
    solver = get_solver(param)
    solver.set_action_function(flags)
    setup(solver)
    if args.snapshot:
        glog.log("caffe.cpp:229", f"Resuming from {args.snapshot}")
        solver.restore(args.snapshot)
    glog.log("caffe.cpp:239", "Starting Optimization")
    solver.solve()
    glog.log("caffe.cpp:250", "Optimization Done.")
    return 0


def _net(args, phase: int):
    from ..net import Net
    return Net(args.model, phase=phase, level=args.level, stages=_stages(args.stage))


def test(args) -> int:
    if not args.model:
        raise CaffeError("Need a model definition to score (--model)")
    if not args.weights:
        raise CaffeError("Need model weights to score (--weights)")
    _use_devices(_first_gpu(args.gpu))
    net = _net(args, TEST)
    for w in args.weights.split(","):
        net.copy_from(w.strip())
    glog.log("caffe.cpp:290", f"Running for {args.iterations} iterations.")
    scores: list[float] = []
    names: list[str] = []
    loss = np.float32(0)
    with torch.no_grad():
        for i in range(args.iterations):
            loss = np.float32(loss + np.float32(net.run().item()))
            idx = 0
            for name in net.outputs:
                for value in net._data[name].detach().cpu().numpy().astype(np.float32).ravel():
                    if i == 0:
                        scores.append(np.float32(value))
                        names.append(name)
                    else:
                        scores[idx] = np.float32(scores[idx] + value)
                    glog.log("caffe.cpp:313", f"Batch {i}, {name} = {glog.fmt(value)}")
                    idx += 1
    glog.log("caffe.cpp:318", f"Loss: {glog.fmt(loss / np.float32(max(args.iterations, 1)))}")
    for name, score in zip(names, scores):
        mean = np.float32(score / np.float32(args.iterations))
        weight = np.float32(net.blob_loss_weights.get(name, 0.0))
        suffix = f" (* {glog.fmt(weight)} = {glog.fmt(weight * mean)} loss)" if weight else ""
        glog.log("caffe.cpp:330", f"{name} = {glog.fmt(mean)}{suffix}")
    return 0


def _first_gpu(flag: str) -> list[int]:
    from ..distributed import parse_gpus
    return parse_gpus(flag)[:1]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_net(args) -> int:
    """Per-layer forward and backward times, as Caffe's ``caffe time``. A layer's backward is
    timed as the autograd of its own forward from its tops back to its bottoms and blobs. The
    totals (forward pass, backward pass, forward-backward) time the pass the solver runs: the
    whole net's forward and one backward from its loss, so they say the speed training has."""
    if not args.model:
        raise CaffeError("Need a model definition to time (--model)")
    if args.phase not in ("", "TRAIN", "TEST"):
        raise CaffeError(f'phase must be "TRAIN" or "TEST", got "{args.phase}"')
    phase = TEST if args.phase == "TEST" else TRAIN
    _use_devices(_first_gpu(args.gpu))
    net = _net(args, phase)
    device = net.device
    glog.log("caffe.cpp:352", "Performing Forward")
    initial = net.run()
    glog.log("caffe.cpp:355", f"Initial loss: {glog.fmt(float(initial.detach()))}")
    glog.log("caffe.cpp:356", "Performing Backward")
    if initial.requires_grad:
        initial.backward()
    if net.requires_backward:
        warm_up_autograd()
    glog.log("caffe.cpp:368", "*** Benchmark begins ***")
    glog.log("caffe.cpp:369", f"Testing for {args.iterations} iterations.")
    n = len(net.modules)
    fwd, bwd = [0.0] * n, [0.0] * n
    fwd_total = bwd_total = 0.0
    start_total = time.perf_counter()
    for j in range(args.iterations):
        for i in range(n):
            fwd[i] += time_layer_forward(net, i, device)
        if net.requires_backward:
            for i in reversed(range(n)):
                bwd[i] += _time_layer_backward(net, i, device)
        forward_s, backward_s = time_solver_pass(net, device)
        fwd_total += forward_s
        bwd_total += backward_s
        glog.log("caffe.cpp:397", f"Iteration: {j + 1} forward-backward time: "
                 f"{glog.fmt((forward_s + backward_s) * 1e3)} ms.")
    total = time.perf_counter() - start_total
    it = max(args.iterations, 1)
    glog.log("caffe.cpp:400", "Average time per layer: ")
    for i, name in enumerate(net._layer_names):
        glog.log("caffe.cpp:403", f"{name:>10}\tforward: {glog.fmt(fwd[i] * 1e3 / it)} ms.")
        glog.log("caffe.cpp:406", f"{name:>10}\tbackward: {glog.fmt(bwd[i] * 1e3 / it)} ms.")
    glog.log("caffe.cpp:411", f"Average Forward pass: {glog.fmt(fwd_total * 1e3 / it)} ms.")
    glog.log("caffe.cpp:413", f"Average Backward pass: {glog.fmt(bwd_total * 1e3 / it)} ms.")
    glog.log("caffe.cpp:415", f"Average Forward-Backward: "
             f"{glog.fmt((fwd_total + bwd_total) * 1e3 / it)} ms.")
    glog.log("caffe.cpp:417", f"Total Time: {glog.fmt(total * 1e3)} ms.")
    glog.log("caffe.cpp:418", "*** Benchmark ends ***")
    return 0


def warm_up_autograd() -> None:
    """One autograd call with explicit gradients before the benchmark: the first such call of a
    process imports PyTorch's symbolic-shape helpers (sympy, half a second to two seconds), which
    would otherwise count as the backward of the first layer timed (the loss)."""
    t = torch.zeros(1, requires_grad=True)
    torch.autograd.backward([t * 1], [torch.ones(1)])


def time_layer_forward(net, i: int, device: torch.device) -> float:
    """Seconds for the forward of layer ``i`` alone, on its current bottoms, recording nothing."""
    _sync(device)
    t = time.perf_counter()
    with torch.no_grad():
        net._forward_layer(i)
    _sync(device)
    return time.perf_counter() - t


def time_solver_pass(net, device: torch.device) -> tuple[float, float]:
    """Seconds of the solver's forward (``Net.run``) and of its backward from the loss."""
    net.clear_param_diffs()
    _sync(device)
    start = time.perf_counter()
    loss = net.run()
    _sync(device)
    middle = time.perf_counter()
    if net.requires_backward and loss.requires_grad:
        loss.backward()
    _sync(device)
    return middle - start, time.perf_counter() - middle


def _time_layer_backward(net, i: int, device: torch.device) -> float:
    """Seconds for the backward of layer ``i`` alone, on its current bottoms (gradients to its
    parameters, and to bottoms that are not data: Caffe's bottom_need_backward)."""
    name = net._layer_names[i]
    bottoms = net.bottom_names[name]
    layer = net.modules[i]
    if not bottoms:
        return 0.0
    sources = {t for n in net._layer_names if not net.bottom_names[n] for t in net.top_names[n]}
    inputs = [net._data[b].detach().requires_grad_(b not in sources) for b in bottoms]
    with torch.enable_grad():
        outputs = [t for t in layer.forward(*inputs) if t.requires_grad]
    if not outputs:
        return 0.0
    grads = [torch.ones_like(t) for t in outputs]
    _sync(device)
    t = time.perf_counter()
    torch.autograd.backward(outputs, grads)
    _sync(device)
    return time.perf_counter() - t


def device_query(args) -> int:
    from ..distributed import parse_gpus
    glog.log("caffe.cpp:112", f"Querying GPUs {args.gpu}")
    if not torch.cuda.is_available():
        if args.gpu:
            raise CaffeError("PyTorch sees no CUDA device")
        glog.log("common.cpp:170", "No CUDA device; PyTorch runs on the CPU "
                 f"({torch.get_num_threads()} threads)")
        return 0
    for g in parse_gpus(args.gpu or "all"):
        prop = torch.cuda.get_device_properties(g)
        glog.log("common.cpp:177", f"Device id:                     {g}")
        glog.log("common.cpp:178", f"Major revision number:         {prop.major}")
        glog.log("common.cpp:179", f"Minor revision number:         {prop.minor}")
        glog.log("common.cpp:180", f"Name:                          {prop.name}")
        glog.log("common.cpp:181", f"Total global memory:           {prop.total_memory}")
        glog.log("common.cpp:185", f"Number of multiprocessors:     {prop.multi_processor_count}")
    return 0


def main_args(argv: Sequence[str]) -> int:
    if not argv or argv[0] not in COMMANDS:
        if argv and not argv[0].startswith("-"):
            print(f"caffe: error: Unknown action: {argv[0]} (available: {', '.join(COMMANDS)})",
                  file=sys.stderr)
        else:
            print(USAGE, file=sys.stderr, end="")
        return 1
    args = _parser().parse_args(list(argv))
    return {"train": train, "test": test, "time": time_net, "device_query": device_query}[
        args.command](args)


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point ``caffe``."""
    return run_main(main_args, argv)


if __name__ == "__main__":
    sys.exit(main())
