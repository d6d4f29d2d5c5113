"""The shipped FER2013 models: each one's SSE form, head width and schedule, and its nets."""
from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from caffe import atomic, model_io

from ..nets.common import DataConfig
from ..nets import holonet
from ..nets.generate import write_variant
from .data import SIZE, Fer2013Error

@dataclass(frozen=True)
class WarmStart:
    """Weights a schedule starts from: a caffemodel committed in this repository at ``commit``
    (``git show COMMIT:PATH``), and what those weights had been trained on, for the card."""

    commit: str
    path: str
    history: str


@dataclass(frozen=True)
class Member:
    """One shipped FER2013 model: the SSE form, its head width and its training schedule.

    ``stages`` are the ``max_iter`` of each stage of the schedule: a stage resumes from the last
    snapshot of the one before with a longer ``max_iter``, so the linearly decaying rate jumps back up
    (to ``base_lr * (1 - start / max_iter)``) and decays to zero again: a warm restart that keeps the
    momentum history, and the way a run was lengthened once it had converged on a shorter schedule."""

    name: str
    form: str
    head_width: int | None = None
    trunk_width: int = 1  # every trunk layer this many times as wide as the released HoloNet's
    seed: int = 1701
    stages: tuple[int, ...] = (6000, 24000)
    batch: int = 64
    base_lr: float = 0.02
    weight_decay: float = 5e-4
    snapshot: int = 1000
    max_rotation: float = 10.0
    max_scale_jitter: float = 0.1
    note: str = ""  # how the shipped run departed from this recipe, for the card
    warm_start: WarmStart | None = None  # the first stage starts from these weights (else the fillers)

    @property
    def iterations(self) -> int:
        """The whole schedule's length: the last stage's ``max_iter``."""
        return self.stages[-1]


RAW_CROPS_COMMIT = "8e75d440b1a145fb9c56cf151a0c8d41da89150d"  # the last commit whose shipped models learned FER2013's own 48x48 pictures


def _raw_crops(name: str, schedule: str) -> WarmStart:
    return WarmStart(RAW_CROPS_COMMIT, f"models/fer2013_{name}/model.caffemodel",
                     f"{schedule} of batch 64 on FER2013's own 48x48 pictures, base_lr 0.02 in two "
                     f"linearly decaying stages")


MEMBERS = {m.name: m for m in (
    Member("holonet48_3conv-s_concat", "3conv-s+concat", seed=1711, stages=(9000,), base_lr=0.008,
           warm_start=_raw_crops("holonet48_3conv-s_concat", "24000 iterations")),
    Member("holonet48_4conv-c_concat", "4conv-c+concat", head_width=128, seed=1712, stages=(6000,),
           base_lr=0.008, warm_start=_raw_crops("holonet48_4conv-c_concat", "16000 iterations")),
    Member("holonet48_3conv-s_eltwise", "3conv-s+eltwise", seed=1713, stages=(9000,), base_lr=0.008,
           warm_start=_raw_crops("holonet48_3conv-s_eltwise", "24000 iterations")),
    Member("holonet48_original", "original", seed=1714, stages=(9000,), base_lr=0.008,
           warm_start=_raw_crops("holonet48_original", "24000 iterations")),
    Member("holonet48x2_3conv-s_concat", "3conv-s+concat", trunk_width=2, head_width=512, seed=1721,
           stages=(10000, 24000),
           note="Trained from the fillers on the pipeline's crops; every trunk layer twice as wide, the "
                "heads 512 wide (so that the caffemodel stays within 25 MB)"),
)}


def describe_schedule(member: Member, training_faces: int = 28709) -> str:
    """The member's learning-rate schedule in words, stage by stage (for cards and the benchmark)."""
    start = f"from the weights of {member.warm_start.path} at commit {member.warm_start.commit[:7]} " \
        f"({member.warm_start.history}), " if member.warm_start else ""
    parts = [f"{start}base_lr {member.base_lr:g} decaying linearly to 0 (`poly`, power 1) over "
             f"{member.stages[0]} iterations"]
    for start, max_iter in zip(member.stages, member.stages[1:]):
        parts.append(f"then resumed from its snapshot of iteration {start} with max_iter {max_iter} (the "
                     f"rate back at {member.base_lr * (1 - start / max_iter):.3g}, decaying to 0 again)")
    return (", ".join(parts) + f": {member.iterations} iterations of batch {member.batch} in all "
            f"({member.iterations * member.batch / training_faces:.1f} epochs)")


def get_member(name: str) -> Member:
    if name not in MEMBERS:
        raise Fer2013Error(f"unknown FER2013 model '{name}' (one of {', '.join(MEMBERS)})")
    return MEMBERS[name]


def snapshots(member: Member, work: str | Path, suffix: str = ".caffemodel") -> list[tuple[int, Path]]:
    """(iteration, file) of every snapshot of the member (its weights; ``suffix=".solverstate"``:
    its solver states), in iteration order."""
    pattern = re.compile(r"snap_iter_(\d+)" + re.escape(suffix))
    found = [(int(m.group(1)), p) for p in (Path(work) / member.name).glob(f"snap_iter_*{suffix}")
             if (m := pattern.fullmatch(p.name))]
    return sorted(found)


def next_stage(member: Member, work: str | Path) -> tuple[int, Path | None] | None:
    """The first stage whose ``max_iter`` the newest solver state has not reached, and that state to
    resume it from (None: from the start); None when the whole schedule is trained."""
    states = snapshots(member, work, ".solverstate")
    done, latest = states[-1] if states else (0, None)
    return next(((stage, latest) for stage, max_iter in enumerate(member.stages) if done < max_iter), None)


def resume_flag(member: Member, work: str | Path, state: Path | None = None) -> str:
    """The ``caffe train`` flag that starts a stage: ``--snapshot=STATE`` to resume; for the first
    stage of a warm-started member ``--weights=`` its warm-start weights (written once into
    ``work/<name>/warm_start.caffemodel`` from git); else nothing (the fillers)."""
    if state is not None:
        return f"--snapshot={state}"
    if member.warm_start is None:
        return ""
    path = Path(work) / member.name / "warm_start.caffemodel"
    if not path.is_file():
        ws = member.warm_start
        try:
            blob = subprocess.run(["git", "show", f"{ws.commit}:{ws.path}"], capture_output=True, check=True,
                                  cwd=Path(__file__).resolve().parents[2]).stdout
        except (OSError, subprocess.CalledProcessError) as exc:
            raise Fer2013Error(f"{member.name}: cannot read its warm-start weights {ws.path} at commit "
                               f"{ws.commit} from git ({exc})") from None
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_bytes(path, blob)
    return f"--weights={path}"


def make_nets(member: Member, work: str | Path, stage: int = -1) -> dict[str, Path]:
    """The member's train/test/deploy prototxts and the solver of one stage (default: the last)
    under ``work/<name>/``.

    SGD with momentum 0.9 and a linear decay of the rate to zero (``poly``, power 1) over the
    stage's ``max_iter``; Caffe's own test runs are off (``select`` scores every snapshot on
    PublicTest)."""
    work = Path(work)
    try:
        max_iter = member.stages[stage]
    except IndexError:
        raise Fer2013Error(f"{member.name} has {len(member.stages)} stage(s), not stage {stage}") from None
    info = json.loads((work / "data.json").read_text())
    cfg = DataConfig(input_size=SIZE, channels=1, mean_value=(info["mean_value"],), mirror=True,
                     crop_size=SIZE, max_rotation=member.max_rotation,
                     max_scale_jitter=member.max_scale_jitter,
                     train_source=str(work / "training_lmdb"), val_source=str(work / "publictest_lmdb"),
                     test_list="test_file_list.txt", train_batch=member.batch, val_batch=97, test_batch=97)
    folder = work / member.name
    paths = write_variant(holonet.widened(member.trunk_width), member.form, folder, cfg, max_iter=max_iter,
                          solver_mode="CPU", head_width=member.head_width)
    solver = model_io.read_solver(paths["solver"])
    solver.base_lr = member.base_lr
    solver.lr_policy = "poly"
    solver.power = 1.0
    solver.ClearField("stepsize")
    solver.ClearField("gamma")
    solver.weight_decay = member.weight_decay
    solver.display = 100
    solver.average_loss = 100
    solver.test_interval = max_iter + 1
    solver.test_initialization = False
    del solver.test_iter[:]
    solver.test_iter.append(1)
    solver.snapshot = member.snapshot
    solver.snapshot_prefix = str(folder / "snap")
    solver.random_seed = member.seed
    model_io.write_text(solver, paths["solver"])
    return paths
