"""Training curves from a Caffe log: loss, test outputs (accuracy...) and learning rate against
iteration, drawn as one PNG. Reads the lines Caffe (and this package) write:

    Iteration 100 (12.3 iter/s, 8.1s/100 iters), loss = 0.52      (older logs: "Iteration 100, loss = 0.52")
        Train net output #0: loss = 0.52 (* 1 = 0.52 loss)
    Iteration 100, lr = 0.01
    Iteration 100, Testing net (#0)
        Test net output #0: accuracy = 0.61

``caffe-plot-log train.log -o curves.png [--csv prefix]``; ``LivePlot`` redraws the PNG during a
run (``solver.add_observer(LivePlot("curves.png"))``)."""
from __future__ import annotations

import argparse
import csv
import io
import os
import re
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from ..atomic import atomic_path, write_text
from ..errors import CaffeError
from .cli_util import run_main

_NUMBER = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?nan|[-+]?inf)"
_TRAIN_LOSS = re.compile(r"Iteration (\d+)(?: \([^)]*\))?, loss = " + _NUMBER)
_TRAIN_OUTPUT = re.compile(r"Train net output #(\d+): (\S+) = " + _NUMBER)
_LR = re.compile(r"Iteration (\d+), lr = " + _NUMBER)
_TESTING = re.compile(r"Iteration (\d+), Testing net \(#(\d+)\)")
_TEST_OUTPUT = re.compile(r"Test net output #(\d+): (\S+) = " + _NUMBER)


@dataclass
class Curves:
    """Series by name, each a list of (iteration, value): ``train`` (``loss`` is the displayed,
    smoothed loss; other names the train net outputs), ``test`` (test net outputs, ``#k/`` prefixed
    for test nets after the first) and ``lr``."""
    train: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    test: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    lr: list[tuple[int, float]] = field(default_factory=list)

    def add_train(self, iteration: int, name: str, value: float) -> None:
        self.train.setdefault(name, []).append((iteration, value))

    def add_test(self, iteration: int, net_id: int, name: str, value: float) -> None:
        key = name if net_id == 0 else f"#{net_id}/{name}"
        self.test.setdefault(key, []).append((iteration, value))

    def empty(self) -> bool:
        return not (self.train or self.test or self.lr)


def parse_log(lines: Iterable[str]) -> Curves:
    """The curves in the lines of a Caffe training log."""
    curves = Curves()
    train_iter: int | None = None
    test_iter: tuple[int, int] | None = None
    for line in lines:
        m = _TRAIN_LOSS.search(line)
        if m:
            train_iter = int(m.group(1))
            curves.add_train(train_iter, "loss", float(m.group(2)))
            continue
        m = _TRAIN_OUTPUT.search(line)
        if m and train_iter is not None:
            curves.add_train(train_iter, f"output/{m.group(2)}", float(m.group(3)))
            continue
        m = _LR.search(line)
        if m:
            curves.lr.append((int(m.group(1)), float(m.group(2))))
            continue
        m = _TESTING.search(line)
        if m:
            test_iter = (int(m.group(1)), int(m.group(2)))
            continue
        m = _TEST_OUTPUT.search(line)
        if m and test_iter is not None:
            curves.add_test(test_iter[0], test_iter[1], m.group(2), float(m.group(3)))
    return curves


def read_log(path: str | os.PathLike) -> Curves:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return parse_log(f)
    except FileNotFoundError:
        raise CaffeError(f"{path}: log file not found") from None


def _atomic_savefig(fig, path: str | os.PathLike) -> None:
    with atomic_path(path, ".png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)


def plot_curves(curves: Curves, path: str | os.PathLike, title: str = "") -> None:
    """Draw loss (train and test losses), the other test outputs, and the rate, as a PNG."""
    if curves.empty():
        raise CaffeError("the log holds no training lines (Iteration N, loss = ...); nothing to plot")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    test_losses = {k: v for k, v in curves.test.items() if "loss" in k}
    test_others = {k: v for k, v in curves.test.items() if "loss" not in k}
    train_others = {k: v for k, v in curves.train.items() if k != "loss" and "loss" not in k}
    panels = ["loss"] + (["outputs"] if test_others or train_others else []) + \
        (["lr"] if curves.lr else [])
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 3.2 * len(panels)), sharex=True,
                             squeeze=False)
    axes = axes[:, 0]
    for ax, panel in zip(axes, panels):
        if panel == "loss":
            _series(ax, "train loss", curves.train.get("loss", []), "-")
            for name, pts in test_losses.items():
                _series(ax, f"test {name}", pts, "o-")
            ax.set_ylabel("loss")
            _log_scale_if_wide(ax, [v for pts in [curves.train.get("loss", [])] +
                                    list(test_losses.values()) for _, v in pts])
        elif panel == "outputs":
            for name, pts in test_others.items():
                _series(ax, f"test {name}", pts, "o-")
            for name, pts in train_others.items():
                _series(ax, f"train {name.removeprefix('output/')}", pts, "-")
            ax.set_ylabel("test outputs")
        else:
            _series(ax, "lr", curves.lr, "-", drawstyle="steps-post")
            ax.set_ylabel("learning rate")
            if all(v > 0 for _, v in curves.lr):
                ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
        ax.legend(loc="best", fontsize=8)
    axes[-1].set_xlabel("iteration")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    _atomic_savefig(fig, path)
    plt.close(fig)


def _series(ax, label: str, points: Sequence[tuple[int, float]], style: str, **kw) -> None:
    if points:
        ax.plot([p[0] for p in points], [p[1] for p in points], style, label=label, markersize=3,
                **kw)


def _log_scale_if_wide(ax, values: list[float]) -> None:
    """A log axis when positive values span more than two decades (a first test loss far above
    the rest would flatten the curve)."""
    finite = [v for v in values if v == v and abs(v) != float("inf")]
    if finite and min(finite) > 0 and max(finite) / min(finite) > 100:
        ax.set_yscale("log")


def write_csv(curves: Curves, prefix: str) -> list[str]:
    """``prefix.train.csv`` and ``prefix.test.csv`` (one row per iteration), like parse_log.py."""
    written = []
    for kind, series, extra in (("train", curves.train, curves.lr), ("test", curves.test, None)):
        columns = dict(series)
        if extra:
            columns["lr"] = extra
        if not columns:
            continue
        rows: dict[int, dict[str, float]] = {}
        for name, pts in columns.items():
            for it, v in pts:
                rows.setdefault(it, {})[name] = v
        path = f"{prefix}.{kind}.csv"
        buffer = io.StringIO(newline="")
        w = csv.writer(buffer)
        names = list(columns)
        w.writerow(["iteration"] + names)
        for it in sorted(rows):
            w.writerow([it] + [rows[it].get(n, "") for n in names])
        write_text(path, buffer.getvalue())
        written.append(path)
    return written


class LivePlot:
    """A solver observer that redraws the curves PNG every ``every`` displayed iterations, after
    each test and at each snapshot."""

    def __init__(self, path: str | os.PathLike, every: int = 10, title: str = "") -> None:
        self.path, self.every, self.title = path, max(1, int(every)), title
        self.curves = Curves()
        self._shown = 0

    def on_train(self, iteration: int, loss: float, outputs: dict) -> None:
        self.curves.add_train(iteration, "loss", float(loss))
        for name, values in outputs.items():
            if name != "loss" and len(values) == 1:
                self.curves.add_train(iteration, f"output/{name}", float(values[0]))
        self._shown += 1
        if self._shown % self.every == 0:
            self.draw()

    def on_lr(self, iteration: int, lr: float) -> None:
        self.curves.lr.append((iteration, float(lr)))

    def on_test(self, iteration: int, net_id: int, outputs: dict) -> None:
        for name, value in outputs.items():
            if isinstance(value, float):
                self.curves.add_test(iteration, net_id, name, value)
        self.draw()

    def on_snapshot(self, iteration: int, path: str) -> None:
        self.draw()

    def draw(self) -> None:
        if not self.curves.empty():
            plot_curves(self.curves, self.path, self.title)


def main_args(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog="caffe-plot-log", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("log", help="a Caffe training log (the stderr of caffe train)")
    p.add_argument("-o", "--output", help="PNG to write (default: the log's name + .png)")
    p.add_argument("--title", default="", help="figure title (default: the log's file name)")
    p.add_argument("--csv", metavar="PREFIX", help="also write PREFIX.train.csv and PREFIX.test.csv")
    args = p.parse_args(list(argv))
    curves = read_log(args.log)
    out = args.output or f"{args.log}.png"
    plot_curves(curves, out, args.title or os.path.basename(args.log))
    print(out)
    if args.csv:
        for path in write_csv(curves, args.csv):
            print(path)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point ``caffe-plot-log``."""
    return run_main(main_args, argv)


if __name__ == "__main__":
    raise SystemExit(main())
