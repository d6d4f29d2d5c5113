"""pycaffe's solvers (``caffe.SGDSolver``, ``caffe.get_solver``...), running Caffe's training loop:

* per iteration: zero the parameter diffs; test every ``test_interval`` (and at 0 unless
  ``test_initialization: false``); forward-backward ``iter_size`` times; smooth the loss over
  ``average_loss`` iterations; log every ``display`` iterations; then the update: rate from the
  lr policy, ``clip_gradients`` on the global L2 norm, and per parameter diff / iter_size, L2 or
  L1 weight decay times decay_mult, the update rule with rate times lr_mult, ``w -= update``;
* snapshots every ``snapshot`` iterations and after training (``snapshot_after_train``), resumable
  exactly with ``restore``;
* a loss that is NaN or inf stops the run, naming the iteration and the first layer that went
  non-finite.

Logs are Caffe's glog lines on stderr (``caffe.solvers.glog``)."""
from __future__ import annotations

import math
import os
import sys
import time
from typing import Callable

import numpy as np
import torch

from . import model_io
from .errors import SolverError
from .mode import set_random_seed
from .net import Net
from .proto import caffe_pb2
from .solvers import glog, lr_policy, nets, state, updates
from .solvers.diagnose import first_nonfinite_layer

f32 = np.float32


class SolverAction:
    """What an action request (a signal, see ``set_action_function``) asks of the loop."""
    NONE, STOP, SNAPSHOT = "none", "stop", "snapshot"


class Solver:
    """A Caffe solver over a SolverParameter or a solver .prototxt path.

    ``solver.net`` (train net), ``solver.test_nets``, ``solver.iter``, ``step(n)``, ``solve()``,
    ``restore(path)``, ``snapshot()``, ``add_callback(on_start, on_gradients_ready)``."""

    rule_type: str | None = None

    def __init__(self, solver: str | os.PathLike | object, log: bool = True,
                 is_root: bool = True) -> None:
        if isinstance(solver, (str, os.PathLike)):
            param = model_io.read_solver(solver)
        else:
            param = _copy(solver)
        if self.rule_type is not None:
            param.type = self.rule_type
        self.param = param
        self.is_root = is_root
        glog.set_enabled(log and is_root)
        glog.log("solver.cpp:45", "Initializing solver from parameters: \n" + str(param).rstrip())
        self._check(param)
        if param.random_seed >= 0:
            set_random_seed(int(param.random_seed))
        self.rule = updates.make_rule(param)
        self.net = nets.build_train_net(param, glog.log)
        # Only the root tests (as Caffe); other ranks of a parallel run skip building test nets.
        self.test_nets = nets.build_test_nets(param, glog.log) if is_root else []
        for test_net in self.test_nets:
            test_net.share_with(self.net)
        self._params = self.net.learnable_params
        self._lr_mults = [float(f32(m)) for m in self.net.params_lr]
        self._decay_mults = self.net.params_weight_decay
        self.history = [torch.zeros_like(p.data) for _ in range(self.rule.history_sets)
                        for p in self._params]
        self.rule.bind(self.history, len(self._params))
        self.iter = 0
        self.current_step = 0
        self._callbacks: list[tuple[Callable | None, Callable | None]] = []
        self._observers: list[object] = []
        self._action: Callable[[], str] | None = None
        self._test_action: Callable[[], str] | None = None
        self.requested_early_exit = False
        self.smoothed_loss = 0.0
        self._losses: list[float] = []
        self.show_progress = sys.stderr.isatty()
        glog.log("solver.cpp:57", "Solver scaffolding done.")

    # ---------------------------------------------------------------- checks
    @staticmethod
    def _check(param) -> None:
        if param.average_loss < 1:
            raise SolverError(f"average_loss should be >= 1, got {param.average_loss}")
        if param.iter_size < 1:
            raise SolverError(f"iter_size should be >= 1, got {param.iter_size}")
        if param.regularization_type not in ("L1", "L2"):
            raise SolverError(f"Unknown regularization type: {param.regularization_type} (L1 or L2)")
        if param.snapshot_format != param.BINARYPROTO:
            raise SolverError("snapshot_format HDF5 is not supported; use BINARYPROTO")
        lr_policy.check_policy(param)
        if param.snapshot:
            if not param.HasField("snapshot_prefix"):
                raise SolverError("In solver params, snapshot is specified but snapshot_prefix is not")
            state.check_prefix_writable(param.snapshot_prefix)

    # ---------------------------------------------------------------- hooks
    def add_callback(self, on_start: Callable[[], None] | None = None,
                     on_gradients_ready: Callable[[], None] | None = None) -> None:
        """Called at the start of each iteration and when the gradients are ready (before the
        update), as Caffe's Solver::Callback (several-GPU training reduces gradients there).
        An object with ``on_start`` and ``on_gradients_ready`` methods (``caffe.NCCL``) may be
        given alone, as pycaffe's ``solver.add_callback(nccl)``."""
        if on_gradients_ready is None and hasattr(on_start, "on_gradients_ready"):
            on_start, on_gradients_ready = on_start.on_start, on_start.on_gradients_ready
        self._callbacks.append((on_start, on_gradients_ready))

    def add_observer(self, observer: object) -> None:
        """An object with any of ``on_train(iter, loss, outputs)``, ``on_lr(iter, lr)``,
        ``on_test(iter, net_id, outputs)``, ``on_snapshot(iter, path)``: told what the log says."""
        self._observers.append(observer)

    def _notify(self, event: str, *args) -> None:
        for obs in self._observers:
            fn = getattr(obs, event, None)
            if fn is not None:
                fn(*args)

    def set_action_function(self, fn: Callable[[], str] | None,
                            test_fn: Callable[[], str] | None = None) -> None:
        """``fn()`` is asked after each update (and each test batch) whether to stop or snapshot;
        it returns a SolverAction value. ``test_fn``, if given, is asked during testing instead
        (a several-process run tests on the root alone, so it must not synchronise ranks)."""
        self._action = fn
        self._test_action = test_fn

    def _requested_action(self, testing: bool = False) -> str:
        fn = self._test_action if testing and self._test_action is not None else self._action
        return fn() if fn is not None else SolverAction.NONE

    # ---------------------------------------------------------------- training
    def step(self, iters: int) -> None:
        """Run ``iters`` iterations (pycaffe's ``solver.step``)."""
        start_iter, stop_iter = self.iter, self.iter + int(iters)
        self._losses, self.smoothed_loss = [], 0.0
        timer, last = time.perf_counter(), self.iter
        bar = self._progress(stop_iter - start_iter)
        try:
            while self.iter < stop_iter:
                self._clear_diffs()
                p = self.param
                if p.test_interval and self.iter % p.test_interval == 0 and \
                        (self.iter > 0 or p.test_initialization):
                    if self.is_root:
                        self.test_all()
                    if self.requested_early_exit:
                        break
                for on_start, _ in self._callbacks:
                    if on_start is not None:
                        on_start()
                display = bool(p.display) and self.iter % p.display == 0
                loss = self._forward_backward()
                self._update_smoothed_loss(loss, start_iter)
                if display:
                    lapse = time.perf_counter() - timer
                    per_s = (self.iter - last) / lapse if lapse > 0 and self.iter > last else 0.0
                    glog.log("solver.cpp:239", f"Iteration {self.iter} ({glog.fmt(per_s)} iter/s, "
                             f"{glog.fmt(lapse)}s/{p.display} iters), loss = "
                             f"{glog.fmt(self.smoothed_loss)}")
                    timer, last = time.perf_counter(), self.iter
                    outputs = self._net_outputs(self.net)
                    self._log_outputs(self.net, "Train", outputs)
                    self._notify("on_train", self.iter, self.smoothed_loss, outputs)
                for _, on_ready in self._callbacks:
                    if on_ready is not None:
                        on_ready()
                self.apply_update()
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{self.smoothed_loss:.4g}", refresh=False)
                request = self._requested_action()
                if self.is_root and ((p.snapshot and self.iter % p.snapshot == 0) or
                                     request == SolverAction.SNAPSHOT):
                    self.snapshot()
                if request == SolverAction.STOP:
                    self.requested_early_exit = True
                    break
        finally:
            if bar is not None:
                bar.close()
                glog.set_writer(None)

    def _progress(self, total: int):
        if not (self.show_progress and self.is_root and total > 0):
            return None
        from tqdm import tqdm
        bar = tqdm(total=total, initial=0, desc="train", unit="it", file=sys.stderr, leave=False)
        glog.set_writer(lambda line: tqdm.write(line, file=sys.stderr))
        return bar

    def solve(self, resume_file: str | None = None) -> None:
        """Train to ``max_iter`` (pycaffe's ``solver.solve``), optionally resuming a .solverstate;
        snapshot at the end, then one more forward / test pass for display, as Caffe does."""
        glog.log("solver.cpp:289", f"Solving {self.net.name}")
        glog.log("solver.cpp:290", f"Learning Rate Policy: {self.param.lr_policy}")
        self.requested_early_exit = False
        if resume_file:
            glog.log("solver.cpp:296", f"Restoring previous solver status from {resume_file}")
            self.restore(resume_file)
        start_iter = self.iter
        self.step(self.param.max_iter - self.iter)
        p = self.param
        if p.snapshot_after_train and (not p.snapshot or self.iter % p.snapshot != 0) and self.is_root:
            self.snapshot()
        if self.requested_early_exit:
            glog.log("solver.cpp:311", "Optimization stopped early.")
            return
        if p.display and self.iter % p.display == 0:
            with torch.no_grad():
                loss = float(self.net.run().detach())
            self._update_smoothed_loss(loss, start_iter)
            glog.log("solver.cpp:327", f"Iteration {self.iter}, loss = {glog.fmt(self.smoothed_loss)}")
        if p.test_interval and self.iter % p.test_interval == 0 and self.is_root:
            self.test_all()
        glog.log("solver.cpp:332", "Optimization Done.")

    def _clear_diffs(self) -> None:
        for p in self._params:
            p.grad = None

    def _forward_backward(self) -> float:
        """``iter_size`` forward-backward passes; the mean loss (float32 arithmetic, as Caffe)."""
        total = f32(0)
        for _ in range(self.param.iter_size):
            loss_t = self.net.run()
            if loss_t.requires_grad:
                loss_t.backward()
            loss = f32(loss_t.detach().item())
            if not math.isfinite(loss):
                where = first_nonfinite_layer(self.net)
                raise SolverError(f"Iteration {self.iter}: the loss is {loss}; {where}. "
                                  "Training stopped (lower base_lr, or check the data).")
            total = f32(total + loss)
        self.net.last_loss = float(total)
        return float(f32(total / f32(self.param.iter_size)))

    def _update_smoothed_loss(self, loss: float, start_iter: int) -> None:
        n = self.param.average_loss
        if len(self._losses) < n:
            self._losses.append(loss)
            size = len(self._losses)
            self.smoothed_loss = float(f32((f32(self.smoothed_loss) * f32(size - 1) + f32(loss))
                                           / f32(size)))
        else:
            idx = (self.iter - start_iter) % n
            self.smoothed_loss = float(f32(f32(self.smoothed_loss)
                                           + (f32(loss) - f32(self._losses[idx])) / f32(n)))
            self._losses[idx] = loss

    def apply_update(self) -> None:
        """One update of every learnable parameter with the current rate (pycaffe's
        ``apply_update``); increments ``iter``."""
        step_before = self.current_step
        rate, self.current_step = lr_policy.learning_rate(self.param, self.iter, self.current_step)
        if self.param.lr_policy == "multistep" and self.current_step != step_before:
            glog.log("sgd_solver.cpp:53", f"MultiStep Status: Iteration {self.iter}, "
                     f"step = {self.current_step}")
        if self.param.display and self.iter % self.param.display == 0:
            glog.log("sgd_solver.cpp:112", f"Iteration {self.iter}, lr = {glog.fmt(rate)}")
            self._notify("on_lr", self.iter, rate)
        diffs = self._diffs()
        self._clip(diffs)
        p = self.param
        norm = f32(1) / f32(p.iter_size)
        decay = f32(p.weight_decay)
        decays = [float(decay * f32(m)) for m in self._decay_mults]
        rates = [float(f32(rate) * f32(m)) for m in self._lr_mults]
        with torch.no_grad():
            if p.iter_size != 1:
                for g in diffs:
                    g.mul_(float(norm))
            if not (p.regularization_type == "L2"
                    and self.rule.update_all(self._params, diffs, rates, decays)):
                for i, (w, g) in enumerate(zip(self._params, diffs)):
                    if decays[i]:
                        if p.regularization_type == "L2":
                            g.add_(w, alpha=decays[i])
                        else:
                            g.add_(torch.sign(w), alpha=decays[i])
                    w.sub_(self.rule.compute(i, g, rates[i], self.iter))
        self.iter += 1

    def _diffs(self) -> list[torch.Tensor]:
        """The parameter diffs Caffe would hold: the gradient, or zeros for parameters that do
        not learn (lr_mult 0, BatchNorm statistics)."""
        out = []
        for w, lr in zip(self._params, self._lr_mults):
            if lr == 0 or w.grad is None:
                out.append(torch.zeros_like(w.data))
            else:
                out.append(w.grad)
        return out

    def _clip(self, diffs: list[torch.Tensor]) -> None:
        clip = f32(self.param.clip_gradients)
        if clip < 0:
            return
        sumsq = torch.stack([d.double().pow(2).sum() for d in diffs]).sum() if diffs else None
        norm = f32(math.sqrt(float(sumsq))) if sumsq is not None else f32(0)
        if norm > clip:
            scale = f32(clip / norm)
            glog.log("sgd_solver.cpp:93", f"Gradient clipping: scaling down gradients (L2 norm "
                     f"{glog.fmt(norm)} > {glog.fmt(clip)}) by scale factor {glog.fmt(scale)}")
            for d in diffs:
                d.mul_(float(scale))

    def share_weights(self, net: Net) -> None:
        """Make ``net`` use the train net's parameters (pycaffe's ``solver.share_weights``)."""
        net.share_with(self.net)

    # ---------------------------------------------------------------- testing
    def test_all(self) -> list[dict[str, float]]:
        """Run every test net for its test_iter batches; returns the mean outputs of each."""
        results = []
        for net_id in range(len(self.test_nets)):
            if self.requested_early_exit:
                break
            results.append(self.test(net_id))
        return results

    def test(self, net_id: int = 0) -> dict[str, float]:
        """Caffe's Solver::Test: mean of each output element over test_iter batches."""
        glog.log("solver.cpp:347", f"Iteration {self.iter}, Testing net (#{net_id})")
        net = self.test_nets[net_id]
        iters = self.param.test_iter[net_id]
        scores: list[np.ndarray] | None = None
        loss = f32(0)
        for _ in range(iters):
            request = self._requested_action(testing=True)
            while request != SolverAction.NONE:
                if request == SolverAction.SNAPSHOT and self.is_root:
                    self.snapshot()
                elif request == SolverAction.STOP:
                    self.requested_early_exit = True
                request = self._requested_action(testing=True)
            if self.requested_early_exit:
                glog.log("solver.cpp:396", "Test interrupted.")
                return {}
            with torch.no_grad():
                iter_loss = f32(net.run().detach().item())
            if self.param.test_compute_loss:
                loss = f32(loss + iter_loss)
            values = [np.asarray(net._data[n].detach().cpu().numpy(), dtype=f32).ravel()
                      for n in net.outputs]
            scores = values if scores is None else [s + v for s, v in zip(scores, values)]
        if self.param.test_compute_loss:
            glog.log("solver.cpp:401", f"Test loss: {glog.fmt(loss / f32(iters))}")
        means = {n: s / f32(iters) for n, s in zip(net.outputs, scores or [])}
        self._log_outputs(net, "Test", means)
        flat = {n: float(v[0]) if v.size == 1 else v.tolist() for n, v in means.items()}
        self._notify("on_test", self.iter, net_id, flat)
        return flat

    @staticmethod
    def _net_outputs(net: Net) -> dict[str, np.ndarray]:
        return {n: np.asarray(net._data[n].detach().cpu().numpy(), dtype=f32).ravel()
                for n in net.outputs}

    @staticmethod
    def _log_outputs(net: Net, kind: str, outputs: dict[str, np.ndarray]) -> None:
        source = "solver.cpp:258" if kind == "Train" else "solver.cpp:414"
        k = 0
        for name, values in outputs.items():
            weight = f32(net.blob_loss_weights.get(name, 0.0))
            for v in np.asarray(values).ravel():
                suffix = f" (* {glog.fmt(weight)} = {glog.fmt(f32(weight * f32(v)))} loss)" if weight else ""
                glog.log(source, f"    {kind} net output #{k}: {name} = {glog.fmt(v)}{suffix}")
                k += 1

    # ---------------------------------------------------------------- snapshots
    def snapshot(self) -> str:
        """Write ``{prefix}_iter_{iter}.caffemodel`` and ``.solverstate`` (atomically); returns the
        solverstate path."""
        prefix = self.param.snapshot_prefix
        model = state.snapshot_filename(prefix, self.iter, ".caffemodel")
        glog.log("solver.cpp:464", f"Snapshotting to binary proto file {model}")
        self.net.save(model, write_diff=self.param.snapshot_diff)
        solverstate = state.snapshot_filename(prefix, self.iter, ".solverstate")
        glog.log("sgd_solver.cpp:284", f"Snapshotting solver state to binary proto file {solverstate}")
        state.write_state(solverstate, self.iter, model, self.current_step, self.history)
        self._notify("on_snapshot", self.iter, solverstate)
        return solverstate

    def restore(self, path: str | os.PathLike) -> None:
        """Resume from a .solverstate: iteration, weights (its learned_net), history and the
        multistep position; the train net's data layers skip the batches already trained on."""
        path = str(path)
        iteration, learned, current_step, arrays = state.read_state(path, self.history)
        if learned:
            self.net.copy_from(learned)
        with torch.no_grad():
            for h, arr in zip(self.history, arrays):
                h.copy_(torch.from_numpy(arr))
        self.iter, self.current_step = int(iteration), int(current_step)
        glog.log("sgd_solver.cpp:327", "SGDSolver: restoring history")
        for layer in self.net.modules:
            skip = getattr(layer, "skip_batches", None)
            if skip is not None:
                skip(self.iter * self.param.iter_size)


def _copy(param):
    out = caffe_pb2.SolverParameter()
    out.CopyFrom(param)
    return out


class SGDSolver(Solver):
    """Stochastic gradient descent with Caffe's momentum (the rate inside the history)."""
    rule_type = "SGD"


class NesterovSolver(Solver):
    """Nesterov's accelerated gradient, as Caffe's NesterovSolver."""
    rule_type = "Nesterov"


class AdaGradSolver(Solver):
    rule_type = "AdaGrad"


class RMSPropSolver(Solver):
    rule_type = "RMSProp"


class AdaDeltaSolver(Solver):
    rule_type = "AdaDelta"


class AdamSolver(Solver):
    rule_type = "Adam"


_BY_TYPE = {c.rule_type: c for c in (SGDSolver, NesterovSolver, AdaGradSolver, RMSPropSolver,
                                     AdaDeltaSolver, AdamSolver)}


def get_solver(solver: str | os.PathLike | object, **kwargs) -> Solver:
    """The solver of the type the SolverParameter (or .prototxt) names (pycaffe's get_solver)."""
    param = model_io.read_solver(solver) if isinstance(solver, (str, os.PathLike)) else _copy(solver)
    cls = _BY_TYPE.get(param.type)
    if cls is None:
        raise SolverError(f"unknown solver type '{param.type}'; known types: {', '.join(_BY_TYPE)}")
    return cls(param, **kwargs)


__all__ = ["Solver", "SolverAction", "SGDSolver", "NesterovSolver", "AdaGradSolver",
           "RMSPropSolver", "AdaDeltaSolver", "AdamSolver", "get_solver"]
