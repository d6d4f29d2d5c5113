"""This engine side by side with a real BVLC Caffe build (issue 19); writes bench/results/vs_bvlc.md.

The SSE nets (SSE-HoloNet, SSE-DenseNet-121, SSE-ResNet-50, the prototxts of script/) run in both
engines in one run: the TEST net with an Input layer instead of its data layer and without its
loss/accuracy layers (inference, batch 1 and batch 32), and the TRAIN net with an Input layer giving
``data`` and ``label`` (one ``solver.step(1)`` of SGD with momentum, batch 32). Both engines load the
same random weights (random BatchNorm statistics and Scale values) from one caffemodel written by
this engine, and get the same random inputs. Each engine runs in its own worker process (both
packages are named ``caffe``), both workers stay alive through the run, and the repetitions
alternate between them (the order swapped every repetition), so that a drift of the machine touches
both; the figures are medians.

Real Caffe runs pycaffe's idiom (``net.blobs['data'].data[...] = x; net.forward()``). This engine
runs the same code (``plain``), and its inference mode (``caffe.inference.optimize(net)``, what
``sse.shipped`` / ``sse-predict`` score with) as a third column. The outputs of the TEST nets are
compared between the engines before timing (the largest absolute difference of the scores is
reported).

Run: ``python bench/vs_bvlc.py --bvlc /work/bvlc/caffe/python`` (build recipe in bench/README.md),
then ``python bench/merge_results.py``. Without ``--bvlc`` (or when the build does not import) it
says so and times this engine alone. ``--models``, ``--reps-b1``, ``--reps-b32``, ``--reps-train``,
``--from-json`` (render the report again from a run's JSON without measuring)."""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine_info import cpu_model

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
KEYS = ("holonet", "densenet", "resnet")
WORKS = ("train", "infer1", "infer32")
WORK_TITLES = {"train": "training step, batch 32 (`solver.step(1)`)",
               "infer1": "inference, batch 1", "infer32": "inference, batch 32"}
TRAIN_BATCH = 32
SEED = 0
THREADS: int | None = None  # --threads: OMP/OpenBLAS/MKL threads of both workers

KILLED_FOR_MEMORY = "SIGKILL: killed, most likely for memory"  # a worker's failure, in its words

SOLVER = """net: "{net}"
base_lr: 0.001
lr_policy: "fixed"
momentum: 0.9
weight_decay: 0.0002
max_iter: 1000000
display: 0
snapshot: 0
random_seed: 1
solver_mode: CPU
"""


# ----------------------------------------------------------------------------------------------
# worker: one engine, driven by JSON lines on stdin; answers on the original stdout
# ----------------------------------------------------------------------------------------------

def worker_main(engine: str, bvlc: str | None, repo: str | None = None) -> int:
    proto_out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # whatever the engines print goes to stderr
    if bvlc:
        sys.path.insert(0, bvlc)
        extra = os.environ.get("VS_BVLC_EXTRA_PATH")
        if extra:
            sys.path[1:1] = [p for p in extra.split(os.pathsep) if p]
    else:
        sys.path.insert(0, repo or str(REPO))
    import numpy as np
    import caffe
    where = str(Path(caffe.__file__).resolve())
    expected = bvlc or repo or str(REPO)
    if not where.startswith(str(Path(expected).resolve())):
        raise SystemExit(f"worker for {expected} imported caffe from {where}")
    caffe.set_mode_cpu()
    optimize = None
    if engine == "sse":
        import torch
        from caffe.inference import optimize
        info = {"engine": "this engine" + (f" at {os.environ.get('VS_BEFORE_LABEL', repo)}"
                                           if repo else ""),
                "caffe": where, "torch": torch.__version__,
                "threads": str(torch.get_num_threads()), "blas": torch_blas()}
    else:
        info = {"engine": "BVLC Caffe", "caffe": where, "blas": openblas_info()}
    models: dict[str, dict] = {}

    def answer(obj) -> None:
        proto_out.write(json.dumps(obj) + "\n")

    answer({"ready": info})
    for line in sys.stdin:
        msg = json.loads(line)
        cmd = msg["cmd"]
        if cmd == "quit":
            break
        if cmd == "setup":
            f = msg["files"]
            rng = np.random.default_rng(SEED)
            chw = tuple(msg["chw"])
            x32 = (rng.standard_normal((32,) + chw) * 40).astype(np.float32)
            label = rng.integers(0, 7, TRAIN_BATCH).astype(np.float32)
            m: dict = {"x": x32}
            start = time.perf_counter()
            parts = msg.get("parts", ["test1", "test32", "train"])
            batches = [b for b in (1, 32) if f"test{b}" in parts]
            for b in batches:
                net = caffe.Net(f[f"test{b}"], f["weights"], caffe.TEST)
                net.blobs["data"].data[...] = x32[:b]
                m[f"net{b}"] = net
                if optimize is not None:
                    m[f"fast{b}"] = optimize(net)
            if "train" in parts:
                solver = caffe.SGDSolver(f["solver"])
                solver.net.copy_from(f["weights"])
                solver.net.blobs["data"].data[...] = x32[:TRAIN_BATCH]
                solver.net.blobs["label"].data[...] = label
                m["solver"] = solver
            out = {}
            for b in batches:
                net = m[f"net{b}"]
                res = net.forward()
                out[f"plain{b}"] = {k: np.asarray(v).reshape(b, -1).tolist() for k, v in res.items()}
                if optimize is not None:
                    res = m[f"fast{b}"].forward(data=x32[:b])
                    out[f"fast{b}"] = {k: np.asarray(v).reshape(b, -1).tolist() for k, v in res.items()}
            models[msg["model"]] = m
            answer({"setup_s": time.perf_counter() - start, "outputs": out})
        elif cmd == "time":
            m = models[msg["model"]]
            fn = timed_work(m, msg["work"])
            times, cpu = [], []
            for _ in range(msg.get("n", 1)):
                c0 = time.process_time()
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
            answer({"times": times, "cpu": cpu})
        elif cmd == "free":
            models.pop(msg["model"], None)
            import gc
            gc.collect()
            answer({"freed": msg["model"]})
    return 0


def timed_work(m: dict, work: str):
    """The call timed for ``work``: infer1/infer32 (pycaffe's idiom), fast1/fast32 (this engine's
    inference mode, numpy in and out), train (one solver step)."""
    if work == "train":
        return lambda: m["solver"].step(1)
    if work.startswith("infer"):
        b = int(work[5:])
        net, x = m[f"net{b}"], m["x"][:b]

        def infer():
            net.blobs["data"].data[...] = x
            return net.forward()
        return infer
    if work.startswith("fast"):
        b = int(work[4:])
        fast, x = m[f"fast{b}"], m["x"][:b]
        return lambda: fast.forward(data=x)
    raise ValueError(work)


def torch_blas() -> str:
    import torch
    cfg = torch.__config__.show().replace("\n", ", ")
    parts = [p.split(":")[-1].strip() for p in cfg.split(",")
             if p.split(":")[-1].strip().startswith(("BLAS_INFO", "USE_MKLDNN"))]
    onednn = [l.strip() for l in torch.__config__.show().splitlines() if "oneDNN" in l or "MKL-DNN" in l]
    return ", ".join(parts + onednn[:1]) or "unknown"


def openblas_info() -> str:
    """The OpenBLAS that real Caffe loaded: its file, version string, kernel and threads."""
    import ctypes
    path = None
    try:
        import caffe._caffe as ext  # the library that libcaffe.so links, not scipy's own copy
        libs = subprocess.run(["ldd", ext.__file__], capture_output=True, text=True).stdout
        for line in libs.splitlines():
            if "=>" in line and ("openblas" in line.lower() or "libblas" in line.lower()):
                path = os.path.realpath(line.split("=>")[1].split("(")[0].strip())
                break
    except (ImportError, OSError):
        pass
    if path is None:
        return "no OpenBLAS found in the process"
    try:
        lib = ctypes.CDLL(path)
        lib.openblas_get_config.restype = ctypes.c_char_p
        lib.openblas_get_corename.restype = ctypes.c_char_p
        return (f"{lib.openblas_get_config().decode()}, kernel {lib.openblas_get_corename().decode()}, "
                f"{lib.openblas_get_num_threads()} threads ({path})")
    except (OSError, AttributeError):
        return path


# ----------------------------------------------------------------------------------------------
# parent
# ----------------------------------------------------------------------------------------------

GENERIC_OPENBLAS_KERNELS = ("Prescott", "Core2", "Penryn", "Dunnington", "Nehalem", "Atom")


def cpu_flags() -> set[str]:
    """The CPU's feature flags (Linux /proc/cpuinfo; empty elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def generic_openblas(blas: str) -> str | None:
    """Why real Caffe's times would understate it, or None: OpenBLAS built with DYNAMIC_ARCH
    picks its kernels by the CPU model it knows; on a model newer than its release it falls back
    to an SSE3 kernel (Prescott), several times slower than the AVX2 / AVX-512 kernels the CPU
    runs. OPENBLAS_CORETYPE names the kernel to use instead."""
    kernel = blas.split("kernel ", 1)[1].split(",")[0].strip() if "kernel " in blas else ""
    flags = cpu_flags()
    if kernel not in GENERIC_OPENBLAS_KERNELS or "avx2" not in flags:
        return None
    wanted = "SkylakeX" if "avx512f" in flags else "Haswell"
    return (f"real Caffe's OpenBLAS took its generic {kernel} kernel on a CPU with "
            f"{'AVX-512' if 'avx512f' in flags else 'AVX2'} (a CPU model newer than that OpenBLAS "
            f"knows), so its times understate it: rerun with OPENBLAS_CORETYPE={wanted}")

class Worker:
    def __init__(self, engine: str, bvlc: str | None, repo: str | None = None) -> None:
        env = dict(os.environ)
        env.setdefault("GLOG_minloglevel", "2")
        env["PYTHONUNBUFFERED"] = "1"
        if THREADS:
            for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
                env[var] = str(THREADS)
        if bvlc:
            env["PYTHONPATH"] = os.pathsep.join(
                p for p in [bvlc, env.get("VS_BVLC_EXTRA_PATH", "")] if p)
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", engine]
        if bvlc:
            cmd += ["--bvlc", bvlc]
        if repo:
            cmd += ["--repo", repo]
            env["PYTHONPATH"] = repo
        self.engine = engine
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     env=env, cwd=tempfile.gettempdir())
        self.info = self.read()["ready"]

    def read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait()
            why = f" ({KILLED_FOR_MEMORY})" if code == -9 else ""
            raise RuntimeError(f"the {self.engine} worker stopped (exit code {code}){why}")
        return json.loads(line)

    def ask(self, **msg) -> dict:
        try:
            self.proc.stdin.write(json.dumps(msg) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            return self.read()  # the worker is gone: read() says how it ended
        return self.read()

    def close(self) -> None:
        try:
            self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass
        self.proc.wait(timeout=60)


def bvlc_problem(bvlc: str) -> str | None:
    """None when the build's caffe imports in a child process, else why not."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in [bvlc, env.get("VS_BVLC_EXTRA_PATH", "")] if p)
    env.setdefault("GLOG_minloglevel", "2")
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import caffe, caffe._caffe; "
            "print(caffe.__file__)")
    r = subprocess.run([sys.executable, "-c", code, bvlc], capture_output=True, text=True, env=env,
                       cwd=tempfile.gettempdir())
    if r.returncode != 0:
        return (r.stderr.strip().splitlines() or ["failed"])[-1]
    if not str(Path(r.stdout.strip()).resolve()).startswith(str(Path(bvlc).resolve())):
        return f"'import caffe' found {r.stdout.strip()}, not the build"
    return None


def write_nets(key: str, folder: Path) -> dict[str, str]:
    """The TEST prototxts (batch 1 and 32), the TRAIN prototxt with Input tops data and label,
    its solver, and the random weights, written by this engine."""
    sys.path.insert(0, str(REPO))
    sys.path.insert(0, str(REPO / "tests"))
    import caffe
    from caffe.model_io import write_text as write_proto
    from inference_helpers import MODELS, randomize_weights, sse_test_net_param, sse_train_net_param
    model = MODELS[key]
    sub = folder / key
    sub.mkdir(parents=True, exist_ok=True)
    files: dict[str, str] = {}
    for b in (1, 32):
        param = sse_test_net_param(model, b)
        write_proto(param, sub / f"test{b}.prototxt")
        files[f"test{b}"] = str(sub / f"test{b}.prototxt")
    caffe.set_random_seed(SEED)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = caffe.Net(files["test1"], caffe.TEST)
    randomize_weights(net, SEED)
    net.save(str(sub / "random.caffemodel"))
    files["weights"] = str(sub / "random.caffemodel")
    write_proto(sse_train_net_param(model, TRAIN_BATCH), sub / "train.prototxt")
    (sub / "solver.prototxt").write_text(SOLVER.format(net=sub / "train.prototxt"))
    files["solver"] = str(sub / "solver.prototxt")
    return files


def max_diff(a: dict, b: dict) -> float:
    import numpy as np
    worst = 0.0
    for k in a:
        if k in b:
            worst = max(worst, float(np.max(np.abs(np.asarray(a[k]) - np.asarray(b[k])))))
    return worst


def machine() -> dict[str, str]:
    model = cpu_model()
    return {"cpu": model, "cores": str(os.cpu_count()), "python": platform.python_version(),
            "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE", "(unset)")}


def loadavg() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def measure(args) -> dict:
    bvlc = args.bvlc
    note = None
    if bvlc:
        problem = bvlc_problem(bvlc)
        if problem:
            note = f"the BVLC build at {bvlc} does not import ({problem}): this engine timed alone"
            bvlc = None
    else:
        note = "no BVLC Caffe build given (--bvlc): this engine timed alone"
    if note:
        print(note, file=sys.stderr)
    run = {"date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
           "command": "python bench/vs_bvlc.py " + " ".join(args.argv), "machine": machine(),
           "load_start": loadavg(), "note": note, "models": {},
           "threads": args.threads or "each library's default"}
    if args.resume:  # a run cut short: keep what it measured, measure the rest
        earlier = json.loads(args.resume.read_text())
        run["models"] = earlier["models"]
        if args.redo:
            forget_works(run["models"], args.redo)
            run["redone"] = [f"{run['models'].get(k.split(':')[0], {}).get('title', k)}, "
                             f"{WORK_TITLES[k.split(':')[1]]}" for k in args.redo]
        run["engines_resumed"] = earlier.get("engines", {})
        if args.before:  # this run's before engine is another: the kept rows lose theirs
            for entry in run["models"].values():
                for times in entry["times"].values():
                    for k in [k for k in times if k.startswith("before:")]:
                        del times[k]
        run["resumed"] = [{k: earlier.get(k) for k in ("date", "command", "load_start", "load_end")}]
        run["resumed"] += earlier.get("resumed", [])
    workers = {"sse": Worker("sse", None)}
    if bvlc:
        workers["bvlc"] = Worker("bvlc", bvlc)
    if args.before:
        os.environ["VS_BEFORE_LABEL"] = args.before_label or args.before
        workers["before"] = Worker("sse", None, repo=str(Path(args.before).resolve()))
    run["engines"] = {k: w.info for k, w in workers.items()}
    generic = generic_openblas(workers["bvlc"].info.get("blas", "")) if bvlc else None
    if generic:
        run["note"] = generic
        print(generic, file=sys.stderr)
    reps = {"train": args.reps_train, "infer1": args.reps_b1, "infer32": args.reps_b32}
    specs = {"sse": (None, None), "bvlc": (bvlc, None),
             "before": (None, str(Path(args.before).resolve()) if args.before else None)}

    def restart(e: str) -> None:
        try:
            workers[e].proc.kill()
            workers[e].proc.wait(timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            pass
        workers[e] = Worker("bvlc" if e == "bvlc" else "sse", *specs[e])

    try:
        with tempfile.TemporaryDirectory() as tmp:
            for key in args.models:
                files = write_nets(key, Path(tmp))
                from inference_helpers import MODELS
                chw = MODELS[key].input_chw
                entry: dict = run["models"].get(key) or {"title": MODELS[key].title, "times": {},
                                                         "diff": {}, "failed": {}}
                entry.setdefault("failed", {})
                run["models"][key] = entry
                for work in ("infer1", "infer32", "train"):
                    if work == "train" and key not in args.train_models:
                        continue
                    if args.redo and f"{key}:{work}" not in args.redo:
                        continue
                    fast = "fast" + work[5:]
                    failed = [k for k in entry["failed"] if k.split(":")[1] in (work, fast)]
                    if work in entry["times"] and not failed:  # measured by the run resumed
                        continue
                    for k in failed:  # measured again
                        del entry["failed"][k]
                    if work == "train":  # fresh workers: freed memory that PyTorch's allocator
                        for e in list(workers):  # keeps mapped leaves room for a train net
                            restart(e)
                    measure_work(args, workers, restart, key, files, chw, work, reps[work], entry)
                    run["load_end"] = loadavg()
                    if args.partial_json:  # what is measured so far, should the run be cut short
                        args.partial_json.write_text(json.dumps(run, indent=1) + "\n")
    finally:
        for w in workers.values():
            w.close()
    run["load_end"] = loadavg()
    return run


def forget_works(models: dict, redo: list[str]) -> None:
    """Drop the works named ``key:work`` (their times, output differences and failures) from a
    resumed run's models, so that they are measured again."""
    for item in redo:
        key, work = item.split(":")
        entry = models.get(key)
        if entry is None:
            continue
        entry["times"].pop(work, None)
        calls = {work, "fast" + work[5:]} if work.startswith("infer") else {work}
        for k in [k for k in entry.get("failed", {}) if k.split(":")[1] in calls]:
            del entry["failed"][k]
        if "alone" in entry:
            entry["alone"] = [k for k in entry["alone"] if k.split(":")[1] not in calls]
        if work.startswith("infer"):
            b = work[5:]
            for k in [k for k in entry.get("diff", {}) if k.split(" vs ")[0] in (f"plain{b}", f"fast{b}")]:
                del entry["diff"][k]


def record_diffs(entry: dict, out: dict, b: int) -> None:
    """The largest output differences between the engines that set up batch ``b`` (``out``:
    engine -> its outputs)."""
    if "sse" not in out:
        return
    entry["diff"][f"fast{b} vs plain{b}"] = max_diff(out["sse"][f"plain{b}"], out["sse"][f"fast{b}"])
    if "bvlc" in out:
        ref = out["bvlc"][f"plain{b}"]
        entry["diff"][f"plain{b} vs bvlc"] = max_diff(out["sse"][f"plain{b}"], ref)
        entry["diff"][f"fast{b} vs bvlc"] = max_diff(out["sse"][f"fast{b}"], ref)
    if "before" in out:
        entry["diff"][f"fast{b} vs before's fast{b}"] = max_diff(out["sse"][f"fast{b}"],
                                                               out["before"][f"fast{b}"])


def killed_for_memory(failed: dict, calls: list) -> list[str]:
    """The engines among ``calls`` whose worker a failure of theirs says was killed (SIGKILL:
    the kernel's out-of-memory killer), in call order."""
    out = []
    for e, w in calls:
        if KILLED_FOR_MEMORY in failed.get(f"{e}:{w}", "") and e not in out:
            out.append(e)
    return out


def measure_work(args, workers: dict, restart, key: str, files: dict, chw, work: str, n: int,
                 entry: dict) -> None:
    """Time one work of one net in every engine, repetitions alternating. The inference nets
    are built once per engine; the training solver is built, warmed up (one step), timed (one
    step) and freed again at each repetition, one engine at a time, so that only one engine's
    train net is in memory (real Caffe's DenseNet-121 at batch 32 takes several GB). An engine
    whose worker dies is recorded as failed for this work, and restarted; one killed for memory
    (SIGKILL) in an inference work is timed again on its own once the others freed their nets
    (``time_alone``)."""
    part = "train" if work == "train" else "test" + work[5:]
    calls = [(e, work) for e in workers if e != "before" or work == "train"]
    if work.startswith("infer"):
        calls.append(("sse", "fast" + work[5:]))
        if "before" in workers:
            calls.append(("before", "fast" + work[5:]))
    if key == "resnet" and work == "train":
        n = max(1, min(n, args.reps_resnet_train))
    all_calls = list(calls)  # calls keeps those whose engine set up; time_alone needs them all
    if "alone" in entry:  # measured again here
        entry["alone"] = [k for k in entry["alone"] if k.split(":")[1] not in {w for _, w in calls}]
    samples: dict[str, list[float]] = {f"{e}:{w}": [] for e, w in calls}
    cpu: dict[str, list[float]] = {f"{e}:{w}": [] for e, w in calls}
    failed = entry["failed"]

    def fail(e: str, w: str, err: Exception) -> None:
        failed.setdefault(f"{e}:{w}", str(err))  # the first cause; later ones follow from it
        print(key, work, e, "failed:", err, file=sys.stderr)
        restart(e)

    def setup(e: str) -> dict | None:
        try:
            return workers[e].ask(cmd="setup", model=key, files=files, chw=chw, parts=[part])
        except RuntimeError as err:
            fail(e, work if e != "before" or work == "train" else "fast" + work[5:], err)
            return None

    def timed(e: str, w: str) -> None:
        got = workers[e].ask(cmd="time", model=key, work=w, n=1)
        samples[f"{e}:{w}"] += got["times"]
        cpu[f"{e}:{w}"] += got["cpu"]

    def time_alone(e: str) -> dict | None:
        """Engine e's calls of this work again, on their own: its worker was killed for memory
        while the other engines held their nets (real Caffe's ResNet-50 at batch 32 alone
        takes most of a 23 GB machine); the others have freed theirs by now. The repetitions
        then alternate only between e's own calls, and the report says so (``alone``).
        Returns e's setup answer (its outputs), or None when it failed again."""
        own = [(g, w) for g, w in all_calls if g == e]
        for g, w in own:
            failed.pop(f"{g}:{w}", None)
            samples[f"{g}:{w}"], cpu[f"{g}:{w}"] = [], []
        got = setup(e)
        if got is None:
            return None
        try:
            for g, w in own:
                workers[e].ask(cmd="time", model=key, work=w, n=1)  # warm-up
            for r in range(n):
                for g, w in (own if r % 2 == 0 else own[::-1]):
                    timed(g, w)
            workers[e].ask(cmd="free", model=key)
        except RuntimeError as err:
            fail(e, work, err)
            return None
        entry.setdefault("alone", []).extend(f"{g}:{w}" for g, w in own)
        return got

    if part != "train":
        setups = {e: setup(e) for e in workers}
        b = int(work[5:])
        out = {e: got["outputs"] for e, got in setups.items() if got is not None}
        record_diffs(entry, out, b)
        calls = [(e, w) for e, w in calls if setups.get(e) is not None]
        for e, w in list(calls):  # warm-up
            try:
                workers[e].ask(cmd="time", model=key, work=w, n=1)
            except RuntimeError as err:
                fail(e, w, err)
                calls = [c for c in calls if c[0] != e]
        for r in range(n):
            for e, w in (calls if r % 2 == 0 else calls[::-1]):
                if f"{e}:{w}" in failed:
                    continue
                try:
                    timed(e, w)
                except RuntimeError as err:
                    fail(e, w, err)
        for e in workers:
            try:
                workers[e].ask(cmd="free", model=key)
            except RuntimeError as err:
                fail(e, work, err)
        for e in killed_for_memory(failed, all_calls):
            got = time_alone(e)
            if got is not None and e not in out:
                out[e] = got["outputs"]
                record_diffs(entry, out, b)
    else:
        for r in range(n):
            for e, w in (calls if r % 2 == 0 else calls[::-1]):
                if f"{e}:{w}" in failed or setup(e) is None:
                    continue
                try:
                    workers[e].ask(cmd="time", model=key, work=w, n=1)  # warm-up step
                    timed(e, w)
                    workers[e].ask(cmd="free", model=key)
                except RuntimeError as err:
                    fail(e, w, err)
    entry["times"][work] = {k: {"median": statistics.median(v), "min": min(v), "max": max(v),
                                "n": len(v), "cpu_median": statistics.median(cpu[k])}
                            for k, v in samples.items() if v}
    print(key, work, {k: round(v["median"] * 1000, 1) for k, v in entry["times"][work].items()},
          file=sys.stderr)


def ms(t: dict | None) -> str:
    return "-" if t is None else f"{t['median'] * 1000:.1f}"


def ratio(a: dict | None, b: dict | None) -> str:
    return "-" if a is None or b is None else f"{a['median'] / b['median']:.2f}x"


def _time_rows(run: dict, before: bool, times_of) -> list[str]:
    """The table rows of every net and work, from ``times_of(times)``: the wall medians as stored
    or the CPU medians."""
    rows = []
    for entry in run["models"].values():
        for work in WORKS:
            t = entry["times"].get(work)
            if t is None:
                continue
            t = times_of(t)
            b, p = t.get(f"bvlc:{work}"), t.get(f"sse:{work}")
            f = t.get(f"sse:fast{work[5:]}") if work.startswith("infer") else None
            row = (f"| {entry['title']} | {WORK_TITLES[work]} | {ms(b)} | {ms(p)} | {ms(f)} | "
                   f"{ratio(b, p)} | {ratio(b, f)} |")
            if before:
                o = t.get(_before_key(work))
                row += f" {ms(o)} | {ratio(b, o)} |"
            rows.append(row)
    return rows


def _before_key(work: str) -> str:
    """The ``before`` engine's timing of a row: its inference mode, or its training step."""
    return "before:train" if work == "train" else f"before:fast{work[5:]}"


def render(run: dict) -> str:
    has_bvlc = "bvlc" in run.get("engines", {})
    threads = run.get("threads")
    title = "## Side by side with real BVLC Caffe (bench/vs_bvlc.py)"
    if isinstance(threads, int) and threads > 1:
        title += f", {threads} threads per engine"
    lines = [title, "",
             f"Measured {run['date']} with `{run['command']}`; medians of repetitions alternating "
             "between the engines (each in its own process, both alive through the run).", ""]
    if run.get("redone"):
        lines += ["Measured again in this run (`--redo`): " + "; ".join(run["redone"]) + ". The "
                  "other rows are those of the earlier run(s) named below, kept as they were "
                  "(`--resume`): they were measured with the code of that time.", ""]
    for earlier in run.get("resumed", []):
        what, rest = (("Earlier run", ".") if run.get("redone")
                      else ("Resumed from a run cut short", ", the rest in this run."))
        lines += [f"{what}: measured from {earlier['date']} with "
                  f"`{earlier['command']}` (load average {earlier['load_start']} -> "
                  f"{earlier['load_end']}){rest}", ""]
    if run.get("note"):
        lines += [f"**{run['note']}.**", ""]
    lines += ["| machine | |", "| --- | --- |"]
    for k, v in run["machine"].items():
        lines.append(f"| {k} | {v} |")
    lines.append(f"| load average 1/5/15 min (start -> end) | {run['load_start']} -> {run['load_end']} |")
    lines.append(f"| threads per engine | {run.get('threads', 'each library default')} |")
    for e, info in run["engines"].items():
        lines.append(f"| {info['engine']} | " + ", ".join(f"{k} {v}" for k, v in info.items()
                                                          if k not in ("engine",)) + " |")
    lines += ["", "Same prototxts (script/, data layer replaced by Input, losses removed for inference), "
              "same random weights (one caffemodel, random BatchNorm statistics and Scale values), same "
              "random inputs. `plain`: pycaffe's idiom (`blobs['data'].data[...] = x; net.forward()`) "
              "in this engine, as in Caffe; `inference mode`: `caffe.inference.optimize(net).forward(data=x)`, "
              "what `sse.shipped` and `sse-predict` score with. Training: one `solver.step(1)` of SGD with "
              "momentum and weight decay on the TRAIN net (Input tops data and label), batch "
              f"{TRAIN_BATCH}.", ""]
    before = run.get("engines", {}).get("before")
    if before is None:
        before = run.get("engines_resumed", {}).get("before")
    if before is None and any(k.startswith("before:") for entry in run["models"].values()
                              for t in entry["times"].values() for k in t):
        before = {"engine": "this engine before (`--before`, `--before-label` of the resumed run's "
                            "command; measured there)", "caffe": "--before"}
    head = "| net | work | real Caffe (ms) | plain (ms) | inference mode (ms) | Caffe / plain | Caffe / inference mode |"
    rule = "| --- | --- | ---: | ---: | ---: | ---: | ---: |"
    if before:
        head += " before (ms) | Caffe / before |"
        rule += " ---: | ---: |"
        lines += [f"`before`: {before['engine']} (`{before['caffe']}`), in its own worker, "
                  "timed in the same alternation: its inference mode on the inference rows, its "
                  "training step on the training rows.", ""]
    lines += [head, rule]
    lines += _time_rows(run, before, lambda t: t)
    lines += ["", "CPU time of the engine's process per call (all its threads; medians), which a loaded "
              "machine inflates less than the wall time when each engine runs one thread:", "",
              head, rule]
    lines += _time_rows(run, before, lambda t: {k: {"median": v["cpu_median"]} for k, v in t.items()
                                                if "cpu_median" in v})
    lines += ["", "Spread (min - max ms over the repetitions, n each):", ""]
    for key, entry in run["models"].items():
        parts = []
        for work in WORKS:
            for k, t in entry["times"].get(work, {}).items():
                parts.append(f"{k} {t['min'] * 1000:.1f}-{t['max'] * 1000:.1f} (n={t['n']})")
        lines.append(f"- {entry['title']}: " + "; ".join(parts))
    missing = [(entry["title"], WORK_TITLES[w]) for entry in run["models"].values()
               for w in WORKS if w not in entry["times"]]
    if missing:
        lines += ["", "Not in this run (left out with `--train-models`, or the run was cut short "
                  "before them): " + "; ".join(f"{t}, {w}" for t, w in missing) + "."]
    alone = [(entry["title"], k) for entry in run["models"].values() for k in entry.get("alone", [])]
    if alone:
        lines += ["", "Timed on their own (the engine's worker was killed for memory while the other "
                  "engine held its nets; timed again after it freed them, repetitions alternating "
                  "only between that engine's own calls): "
                  + "; ".join(f"{title}, {k}" for title, k in alone) + "."]
    failures = [(entry["title"], k, v) for entry in run["models"].values()
                for k, v in entry.get("failed", {}).items()]
    if failures:
        lines += ["", "Not measured (the engine's worker process died; it was restarted for the next work):", ""]
        lines += [f"- {title}, {k}: {v}" for title, k, v in failures]
    lines += ["", "Largest absolute difference of the output scores, checked before timing:", ""]
    for key, entry in run["models"].items():
        lines.append(f"- {entry['title']}: " + "; ".join(f"{k} {v:.2e}" for k, v in entry["diff"].items()))
    if not has_bvlc:
        lines += ["", "Without a BVLC build the Caffe columns stay empty: build it as bench/README.md says "
                  "and pass `--bvlc BUILD/python`."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bvlc", default=None, help="the BVLC build's python/ folder")
    p.add_argument("--worker", choices=("sse", "bvlc"), help=argparse.SUPPRESS)
    p.add_argument("--repo", default=None, help=argparse.SUPPRESS)
    p.add_argument("--before", default=None, metavar="DIR",
                   help="a copy of this repository at an earlier commit (e.g. git archive): its "
                        "inference mode and its training step are timed in the same run, as a "
                        "before/after column")
    p.add_argument("--before-label", default=None, help="how the report names --before")
    p.add_argument("--threads", type=int, default=None,
                   help="threads of both engines (OMP_NUM_THREADS, OPENBLAS_NUM_THREADS, "
                        "MKL_NUM_THREADS); default: each library's own (one per core)")
    p.add_argument("--models", nargs="+", choices=KEYS, default=list(KEYS))
    p.add_argument("--reps-b1", type=int, default=25)
    p.add_argument("--reps-b32", type=int, default=7)
    p.add_argument("--reps-train", type=int, default=5)
    p.add_argument("--reps-resnet-train", type=int, default=3)
    p.add_argument("--refresh-bvlc-info", action="store_true",
                   help="with --from-json and --bvlc: describe the build (its BLAS) again")
    p.add_argument("--resume", type=Path, default=None, metavar="JSON",
                   help="a cut-short run's vs_bvlc.partial.json: keep its measurements, measure the rest")
    p.add_argument("--redo", nargs="+", default=[], metavar="NET:WORK",
                   choices=[f"{k}:{w}" for k in KEYS for w in WORKS],
                   help="measure only these works (e.g. resnet:infer1); with --resume the "
                        "resumed run's other works are kept and its measurements of these replaced")
    p.add_argument("--train-models", nargs="*", choices=KEYS, default=list(KEYS),
                   help="the nets whose training step is timed (default: all)")
    p.add_argument("--out", type=Path, default=HERE / "results" / "vs_bvlc.md")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--from-json", type=Path, default=None)
    args = p.parse_args(argv)
    args.argv = argv
    global THREADS
    THREADS = args.threads
    if args.worker:
        return worker_main(args.worker, args.bvlc if args.worker == "bvlc" else None, args.repo)
    sys.path.insert(0, str(REPO))
    from caffe.atomic import write_text
    if args.from_json:
        run = json.loads(args.from_json.read_text())
        if args.refresh_bvlc_info and args.bvlc:  # describe the build again (not a measurement)
            w = Worker("bvlc", args.bvlc)
            run.setdefault("engines", {})["bvlc"] = w.info
            w.close()
            write_text(args.from_json, json.dumps(run, indent=1) + "\n")
    else:
        json_path = args.json or args.out.with_suffix(".json")
        args.partial_json = json_path.with_suffix(".partial.json")
        run = measure(args)
        args.partial_json.unlink(missing_ok=True)
        json_path.parent.mkdir(parents=True, exist_ok=True)
        write_text(json_path, json.dumps(run, indent=1) + "\n")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_text(args.out, render(run))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
