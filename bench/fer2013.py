"""FER2013: the shipped SSE-HoloNet models, the Original form beside them, their ensemble,
single crop and test-time augmentation, beside the published figures of the models users compare.

Runs the recipe of ``sse.fer2013`` for every member: ``models/train_fer2013.sh`` (LMDBs, nets,
``caffe train``, resumed from snapshots; the members train side by side, one torch thread each),
then selection on PublicTest, one scoring of PrivateTest, ``models/fer2013_*/`` with their cards,
and the ensemble weights searched on PublicTest. Steps already done are not redone.

    python bench/fer2013.py --work work/fer2013                 # everything
    python bench/fer2013.py --work work/fer2013 --report-only   # the table from finished steps
    python bench/fer2013.py --work work/fer2013 --profile       # where a training iteration's time goes

Writes ``bench/results/fer2013.md`` (``--profile``: ``bench/results/fer2013_time.md``) and merges it
into ``bench/RESULTS.md``.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sse.classes import CLASS_NAMES  # noqa: E402
from sse.fer2013 import MEMBERS, get_member  # noqa: E402
from sse.fer2013.recipe import describe_schedule  # noqa: E402
from sse.fer2013.data import load_prepared  # noqa: E402
from sse.fusion import search_weights  # noqa: E402
from sse.fer2013.ship import (PREFIX, build_ensemble, describe_machine, load_selection, select, ship,  # noqa: E402
                               training_stats)

# Published PrivateTest accuracies of what users would pick instead (as their authors report them).
PEERS = [("`fer` package (mini-Xception)", "about 66 %"),
         ("`rmn` (residual masking network), single model", "74.14 %"),
         ("`rmn`, ensemble", "76.82 %"),
         ("VGG19, the widely used PyTorch FER2013 model, ten-crop", "73.11 %")]
ENSEMBLE_MEMBERS = ["holonet48_3conv-s_concat", "holonet48_4conv-c_concat", "holonet48_3conv-s_eltwise"]
# Trained and scored, shipped (and added to the ensemble) only if the ensemble's weight search on
# PublicTest gives it weight and its leave-one-out estimate rises with it (``joins_ensemble``).
CANDIDATES = ["holonet48x2_3conv-s_concat"]


def train(work: Path, names: list[str]) -> None:
    """``models/train_fer2013.sh`` for every member not yet trained, side by side."""
    procs = []
    for name in names:
        member = get_member(name)
        if (work / name / f"snap_iter_{member.iterations}.caffemodel").exists():
            continue
        procs.append((name, subprocess.Popen(["bash", str(REPO / "models" / "train_fer2013.sh"), name, str(work)],
                                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)))
    for name, proc in procs:
        if proc.wait():
            raise SystemExit(f"training {name} failed; see {work / name / 'train.log'}")


def ensemble_search(work: Path, data: str, names: list[str]) -> tuple[list[float], float]:
    """The ensemble's weight search on PublicTest (single crop) over ``names``: weights, leave-one-out."""
    _, labels = load_prepared(data, work, "PublicTest")
    search = search_weights([np.load(work / n / "public_none.npy") for n in names], labels, step=0.05, names=names)
    return [float(w) for w in search.weights], float(search.loo_accuracy)


def joins_ensemble(work: Path, data: str, name: str) -> bool:
    """Whether candidate ``name`` earns a place: weight > 0 and a higher leave-one-out estimate."""
    weights, loo = ensemble_search(work, data, ENSEMBLE_MEMBERS + [name])
    return weights[-1] > 0 and loo > ensemble_search(work, data, ENSEMBLE_MEMBERS)[1]


def report(work: Path, models: Path, data: str) -> str:
    selected = {name: load_selection(get_member(name), work) for name in MEMBERS  # a member still training: left out
                if (work / name / "result.json").is_file()}
    sels = {name: sel for name, sel in selected.items() if (models / f"{PREFIX}{name}").is_dir()}
    unshipped = {name: sel for name, sel in selected.items() if name not in sels}
    ens = json.loads((models / f"{PREFIX}ensemble.json").read_text())
    any_member = get_member(next(iter(MEMBERS)))
    lines = ["## FER2013: the shipped models (bench/fer2013.py)", "",
             f"Machine: {describe_machine()}, torch threads 1 per model; the models trained side by side "
             "on the two cores, sharing them with other work of the session.", "",
             f"Protocol: FER2013 official splits; SSE-HoloNet at 48x48x1 in {len(sels)} models, each trained with "
             f"`models/train_fer2013.sh`: SGD momentum 0.9, weight decay {any_member.weight_decay:g}, "
             f"{describe_schedule(any_member)}"
             + "".join(f" ({m.name}: {describe_schedule(m)}, see its card)" for m in MEMBERS.values()
                       if m.name in sels and m.stages != any_member.stages)
             + "; " + faces_protocol(work) + ", random 48x48 crops of them with 4 px of surroundings, mirror, "
             "rotation ±10°, scale ±10 %. "
             "The snapshot of each model, its default test-time augmentation and the ensemble weights were "
             "chosen on PublicTest; PrivateTest was scored once for each of them (and once per augmentation "
             "mode, shown separately). Model cards: `models/fer2013_*/README.md`.", "",
             "| model | form | parameters | snapshot | PublicTest | **PrivateTest** | + mirror | + ten-crop | "
             "macro-F1 | training | images/s |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, sel in sels.items():
        stats = training_stats(work / name / "train.log", get_member(name).batch)
        lines.append(f"| `{PREFIX}{name}` | {sel.form} | {sel.params / 1e6:.2f} M | {sel.best_iter} | "
                     f"{sel.public['none']:.2%} | **{sel.private['none']:.2%}** | {sel.private['mirror']:.2%} | "
                     f"{sel.private['tencrop']:.2%} | {sel.private_macro_f1:.3f} | "
                     f"{stats['seconds'] / 60:.0f} min | {stats['images_per_s']:.0f} |")
    weights = ", ".join(f"{m['model'][len(PREFIX):]} {m['weight']:.2f}" for m in ens["members"])
    lines.append(f"| `{PREFIX}ensemble.json` | weighted mean ({weights}) | | | {ens['public']['none']:.2%} | "
                 f"**{ens['private']['none']:.2%}** | {ens['private']['mirror']:.2%} | "
                 f"{ens['private']['tencrop']:.2%} | | | |")
    lines += ["", f"Ensemble of the SSE members (every shipped model but the Original form): weights searched "
              f"on {ens['weights_chosen_on']}, "
              f"leave-one-out estimate of the search {ens['public_loo_accuracy']:.2%}; with equal weights "
              f"PrivateTest would be {ens['private']['equal_weights_none']:.2%}.", "",
              "PrivateTest recall per class, single crop (" + ", ".join(CLASS_NAMES) + "):", ""]
    for name, sel in sels.items():
        lines.append(f"- {name}: " + ", ".join(f"{r:.2f}" for r in sel.private_recall))
    lines += ["", "What the schedule bought: PublicTest accuracy (single crop) of the weights it started from "
              "(iteration 0; for a warm start, weights trained on other faces, scored on these) and at the end "
              "of each stage:", ""]
    for name, sel in sels.items():
        curve = dict(sel.curve)
        lines.append(f"- {name}: " + ", ".join(f"iteration {it}: {curve[it]:.2%}" for it in (0, *get_member(name).stages)
                                                if it in curve))
    lines += ["", "PublicTest accuracy of each snapshot (single crop):", ""]
    for name, sel in sels.items():
        lines.append(f"- {name}: " + ", ".join(f"{it}: {acc:.3f}" for it, acc in sel.curve))
    if unshipped:
        _, loo = ensemble_search(work, data, ENSEMBLE_MEMBERS)
        lines += ["", "Trained, not shipped (the ensemble's weight search on PublicTest, single crop, with the "
                  f"model beside the shipped members; leave-one-out estimate without it {loo:.2%}):", ""]
        for name, sel in unshipped.items():
            weights, with_it = ensemble_search(work, data, ENSEMBLE_MEMBERS + [name])
            lines.append(f"- {name} ({sel.form}, {sel.params / 1e6:.2f} M parameters; {describe_schedule(get_member(name))}): "
                         f"snapshot {sel.best_iter}, PublicTest {sel.public['none']:.2%}, PrivateTest (scored once) "
                         f"{sel.private['none']:.2%}, + mirror {sel.private['mirror']:.2%}; in the search it gets "
                         f"weight {weights[-1]:.2f}, leave-one-out {with_it:.2%}. PublicTest of each snapshot: "
                         + ", ".join(f"{it}: {acc:.3f}" for it, acc in sel.curve))
    training = {name: json.loads(curve.read_text()) for name in MEMBERS if name not in selected
                and (curve := work / name / "public_curve.json").is_file()}
    if training:
        lines += ["", "Still training (not shipped; PrivateTest not scored), PublicTest accuracy of each snapshot "
                  "so far (single crop):", ""]
        lines += [f"- {name} ({describe_schedule(get_member(name))}): "
                  + ", ".join(f"{int(it)}: {acc:.3f}" for it, acc in sorted(curve.items(), key=lambda c: int(c[0])))
                  for name, curve in training.items()]
    lines += ["", "Published PrivateTest accuracy of the models users compare with (their authors' figures, "
              "not rerun here):", ""] + [f"- {what}: {acc}" for what, acc in PEERS]
    lines += ["", "Does SSE help? Against the Original form (schedules as above), single crop, "
              "PrivateTest: " + "; ".join(f"{sel.form} {100 * (sel.private['none'] - sels['holonet48_original'].private['none']):+.2f} points"
                                            for name, sel in sels.items() if name != "holonet48_original") + ".", ""]
    return "\n".join(lines)


def faces_protocol(work: Path) -> str:
    """How the faces were made, from the work folder's data.json."""
    info = json.loads((work / "data.json").read_text())
    if "crop" not in info:
        return "faces: FER2013's own 48x48 pictures"
    crop, found = info["crop"], info.get("detected", {})
    return (f"faces: each FER2013 face through the face pipeline (dlib HOG found {found.get('Training', 0):.1%} of "
            f"Training; the rest got the mean FER2013 landmarks) and cut by the shipped crop (all 68 landmarks "
            f"onto the mean face, eye distance {crop['eye_distance']:g}, eye line {crop['eye_height']:g})")


def profile_member(work: Path, name: str, iterations: int = 20) -> dict:
    """Seconds per training iteration of one member (one torch thread, as it trains): the whole
    ``solver.step``, its forward and backward passes, the update (the rest), and the forward time of
    each layer type run layer by layer (the Data layer's share is reading the LMDB and augmenting)."""
    import caffe
    import torch

    from caffe import model_io
    from caffe.tools.caffe_cli import time_layer_forward, time_solver_pass

    torch.set_num_threads(1)
    param = model_io.read_solver(next((work / name).glob("SSE-*/*_train_solver.prototxt")))
    param.snapshot, param.display, param.snapshot_after_train = 0, 0, False
    with tempfile.TemporaryDirectory() as tmp:
        param.snapshot_prefix = str(Path(tmp) / "snap")
        model_io.write_text(param, Path(tmp) / "solver.prototxt")
        solver = caffe.get_solver(str(Path(tmp) / "solver.prototxt"))
    net = solver.net
    solver.step(3)
    step = forward = backward = 0.0
    by_type: dict[str, float] = defaultdict(float)
    for _ in range(iterations):  # interleaved, so that a slow spell of the machine touches all alike
        t = time.perf_counter()
        solver.step(1)
        step += time.perf_counter() - t
        forward_s, backward_s = time_solver_pass(net, net.device)
        forward += forward_s
        backward += backward_s
        for i, layer in enumerate(net.layers):
            by_type[layer.type] += time_layer_forward(net, i, net.device)
    n = iterations
    layer_total = sum(by_type.values())
    return {"step": step / n, "forward": forward / n, "backward": backward / n,
            "update": max(step - forward - backward, 0.0) / n,
            "types": {k: v / layer_total for k, v in sorted(by_type.items(), key=lambda kv: -kv[1])}}


def profile_report(work: Path, iterations: int = 20) -> str:
    lines = ["## FER2013: where a training iteration's time goes (bench/fer2013.py --profile)", "",
             f"Machine: {describe_machine()}; one torch thread, batch 64, each model alone on an otherwise "
             f"idle machine, {iterations} iterations after 3 of warm-up. `step` is `solver.step(1)`; "
             "forward and backward are the solver's passes; update is the rest of the step (SGD with "
             "momentum and weight decay, diff clearing). The layer types' shares are of the forward pass "
             "run layer by layer (Data: reading the LMDB, crop, mirror, rotation and scale).", "",
             "| model | step ms | images/s | forward | backward | update | forward by layer type |",
             "| --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for name in MEMBERS:
        r = profile_member(work, name, iterations)
        types = ", ".join(f"{k} {v:.0%}" for k, v in r["types"].items() if v >= 0.01)
        lines.append(f"| {name} | {r['step'] * 1e3:.0f} | {64 / r['step']:.0f} | "
                     f"{r['forward'] / r['step']:.0%} | {r['backward'] / r['step']:.0%} | "
                     f"{r['update'] / r['step']:.0%} | {types} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", default="work/fer2013")
    p.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "fer2013"))
    p.add_argument("--models", default=str(REPO / "models"))
    p.add_argument("--report-only", action="store_true", help="only write the table from finished steps")
    p.add_argument("--profile", action="store_true", help="only time a training iteration of each model")
    args = p.parse_args()
    work, models = Path(args.work), Path(args.models)
    if args.profile:
        text = profile_report(work)
        (REPO / "bench" / "results" / "fer2013_time.md").write_text(text)
        subprocess.check_call([sys.executable, str(REPO / "bench" / "merge_results.py")])
        print(text)
        return 0
    if not args.report_only:
        train(work, list(MEMBERS))
        for name in MEMBERS:
            member = get_member(name)
            if not (work / name / "result.json").exists():
                select(member, work, args.data, log=lambda m: print(m, file=sys.stderr, flush=True))
            if name in CANDIDATES and not joins_ensemble(work, args.data, name):
                continue
            ship(member, work, models, args.data, work / name / "train.log", describe_machine())
        joined = [n for n in CANDIDATES if (models / f"{PREFIX}{n}").is_dir()]
        build_ensemble([get_member(n) for n in ENSEMBLE_MEMBERS + joined], work, models, args.data)
    text = report(work, models, args.data)
    (REPO / "bench" / "results" / "fer2013.md").write_text(text)
    subprocess.check_call([sys.executable, str(REPO / "bench" / "merge_results.py")])
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
