"""Benchmark of long videos: peak memory and speed of ``sse-preprocess --faces all`` and ``sse-predict``
on the shared 640x360 clip looped to N minutes.

For each length the clip (``short_hamilton_clip.mp4``, 275 frames) is written again and again, with
OpenCV (mp4v), into one video of N minutes in a temporary folder (never kept, never committed): every
loop starts with a jump back to the first frame, a shot cut, so the tracks end there and people are
joined across the cuts by identity, as in a film. Then, each in its own process:

  sse-preprocess CLIP --out T/faces --faces all   the face pipeline (decode, cuts, detection every 5
                                                  frames + tracking, landmarks, descriptors, people,
                                                  crops, manifest, list files)
  sse-predict CLIP --out T --model ENSEMBLE       on the same folder: its face pipeline finds the
                                                  video done (same settings) and the command does the
                                                  rest: reads the manifest, cuts every model's crop
                                                  from the source, scores, writes predictions.csv,
                                                  summary, timelines, contact sheet
  sse-predict CLIP --out U --model ENSEMBLE       into an empty folder: everything in one command, as
                                                  a user runs it (its face pipeline runs after the
                                                  models are loaded, under the memory policy nets set:
                                                  caffe.memory.keep_freed_memory)

Peak memory is the child's peak resident set (``ru_maxrss`` of that process, from ``os.wait4``),
read by a small launcher process that starts the command and reports it: Linux carries the memory
high-water mark of the process that starts a command into the command's ``ru_maxrss`` (exec keeps
it), so a command started straight from this script would show this script's own peak when that is
the larger (it was, before the launcher: this script read the whole manifest, 1.4 GB of Python
objects at 60 minutes, and the sse-predict peaks of the 20- and 60-minute runs were its own);
the speed is the clip's source frames over the command's wall time (interpreter start, imports and
model loading included), with its CPU time beside it. Each sse-predict command runs ``--repeat``
times (its peak moves by tens of MB from run to run on this machine): the lowest peak and the fastest run count.
``--repo`` measures another checkout of the toolkit (e.g. an earlier commit unpacked with
``git archive``) with the same clips; every measurement is kept in bench/results/long_video.json
under its ``--label`` and bench/results/long_video.md shows them all. A run replaces its label's
rows, unless ``--add``: its lengths then replace only the rows of the same length (a long length can
be measured in a later run, with its own ``--repeat``). ``--no-end-to-end`` leaves out the third
command (its row shows "not run"): at 60 minutes it is a second full pass of the face pipeline.
``--work DIR`` keeps the looped videos and their faces in DIR (default: a temporary folder, removed)
and reuses them: a length whose video and finished faces are there skips the loop and sse-preprocess
(its cells show "not run"), so that sse-predict of another checkout can be measured on the same
faces without an hour of face pipeline.

    python bench/bench_long_video.py --minutes 1 10 60 [--repeat 3] [--label NAME] [--repo PATH] [--model ENSEMBLE.json]
                                     [--add] [--no-end-to-end] [--note TEXT] [--work DIR]
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from caffe.atomic import write_text  # noqa: E402

DEFAULT_CLIP = REPO.parent / "shared" / "data" / "media" / "videos" / "short_hamilton_clip.mp4"
DEFAULT_MODEL = REPO / "models" / "fer2013_ensemble.json"
RESULTS_JSON = REPO / "bench" / "results" / "long_video.json"
RESULTS_MD = REPO / "bench" / "results" / "long_video.md"
ENTRY = "import sys, {module} as m; sys.exit(m.main(sys.argv[1:]))"
LAUNCHER = r"""
import json, os, subprocess, sys, time
started = time.perf_counter()
child = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
stderr = child.stderr.read()
_, status, usage = os.wait4(child.pid, 0)
sys.stderr.buffer.write(stderr[-4000:])
print(json.dumps({"code": os.waitstatus_to_exitcode(status), "seconds": time.perf_counter() - started,
                  "cpu": usage.ru_utime + usage.ru_stime, "maxrss_kb": usage.ru_maxrss}))
"""  # started from this script, it starts the measured command: the command's ru_maxrss is its own


def loop_geometry(clip: Path, minutes: float) -> tuple[int, float, int, int]:
    """(frames, fps, width, height) of ``clip`` looped to ``minutes`` of video at its frame rate."""
    import cv2
    capture = cv2.VideoCapture(str(clip))
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    width, height = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    capture.release()
    return max(1, int(round(minutes * 60 * fps))), fps, width, height


def loop_clip(clip: Path, out: Path, minutes: float) -> tuple[int, float, str]:
    """Write ``clip`` looped to ``minutes`` of video at its frame rate into ``out`` (mp4v); returns
    (frames written, fps, WxH). Frames are read and written one at a time."""
    import cv2
    total, fps, width, height = loop_geometry(clip, minutes)
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise OSError(f"{out}: OpenCV cannot write MP4 (mp4v)")
    written = 0
    try:
        while written < total:
            capture = cv2.VideoCapture(str(clip))
            read_any = False
            while written < total:
                ok, frame = capture.read()
                if not ok:
                    break
                read_any = True
                writer.write(frame)
                written += 1
            capture.release()
            if not read_any:
                raise OSError(f"{clip}: no frame decodes")
    finally:
        writer.release()
    return written, fps, f"{width}x{height}"


def run_tool(repo: Path, module: str, argv: list[str]) -> dict:
    """Run ``module.main(argv)`` of the checkout ``repo`` in a child process (started by a small
    launcher process, LAUNCHER); its wall seconds, CPU seconds, peak resident set (MB,
    ``ru_maxrss``) and exit status."""
    env = dict(os.environ, PYTHONPATH=str(repo), OPENCV_FFMPEG_LOGLEVEL="-8")
    out = subprocess.run([sys.executable, "-c", LAUNCHER, sys.executable, "-c", ENTRY.format(module=module), *argv],
                         cwd=repo, env=env, capture_output=True)
    if out.returncode != 0:
        raise RuntimeError(f"the launcher of {module} failed ({out.returncode}): {out.stderr.decode()[-2000:]}")
    report = json.loads(out.stdout.decode().strip().splitlines()[-1])
    if report["code"] != 0:
        raise RuntimeError(f"{module} {' '.join(argv)} failed ({report['code']}): {out.stderr.decode()[-2000:]}")
    return {"seconds": round(report["seconds"], 2), "cpu_seconds": round(report["cpu"], 2),
            "peak_rss_mb": round(report["maxrss_kb"] / 1024, 1), "launcher": True}


def repeated(runs: list[dict]) -> dict:
    """Several runs of one command: the fastest run's seconds, the lowest peak and every peak (the
    peak of sse-predict varies by tens of MB from run to run)."""
    best = min(runs, key=lambda r: r["seconds"])
    return {**best, "peak_rss_mb": min(r["peak_rss_mb"] for r in runs), "peak_rss_mb_runs": [r["peak_rss_mb"] for r in runs]}


def finished_manifest(path: Path) -> dict | None:
    """The face pipeline's manifest at ``path`` without its frames (read entry by entry, as the tools
    read it) if it is there and finished."""
    from sse.faces.jsonstream import read_object
    try:
        manifest = read_object(path, "frames")
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) and manifest.get("complete") is True else None


def measure(repo: Path, clip: Path, model: Path, minutes: float, tmp: Path, repeat: int = 1,
            end_to_end: bool = True, keep: bool = False) -> dict:
    """One length: the loop, sse-preprocess, sse-predict on its faces, sse-predict end to end. With
    ``keep`` the video and faces stay in ``tmp`` and, found there finished, are not made again."""
    video = tmp / f"hamilton_{minutes:g}min.mp4"
    out = tmp / f"out_{minutes:g}"
    manifest_path = out / "faces" / video.stem / "manifest.json"
    reused = keep and video.is_file() and finished_manifest(manifest_path) is not None
    if reused:
        frames, fps, width, height = loop_geometry(clip, minutes)
        size, faces = f"{width}x{height}", None
    else:
        frames, fps, size = loop_clip(clip, video, minutes)
        faces = run_tool(repo, "sse.faces.cli", [str(video), "--out", str(out / "faces"), "--faces", "all",
                                                 "--no-progress"])
    manifest = finished_manifest(manifest_path)
    if manifest is None:
        raise RuntimeError(f"{manifest_path}: the face pipeline left no finished manifest")
    stamp = manifest_path.stat().st_mtime_ns
    predict_runs = []
    for _ in range(repeat):
        shutil.rmtree(out / video.stem, ignore_errors=True)  # the emotions, not the faces
        predict_runs.append(run_tool(repo, "sse.predict.cli", [str(video), "--out", str(out), "--model", str(model),
                                                               "--no-progress"]))
    predict = repeated(predict_runs)
    faces_kept = manifest_path.stat().st_mtime_ns == stamp
    manifest_mb = round(manifest_path.stat().st_size / 2**20, 1)
    if keep:
        shutil.rmtree(out / video.stem, ignore_errors=True)
    else:
        shutil.rmtree(out, ignore_errors=True)
    whole_runs = []
    for _ in range(repeat if end_to_end else 0):
        fresh = tmp / f"fresh_{minutes:g}"
        whole_runs.append(run_tool(repo, "sse.predict.cli", [str(video), "--out", str(fresh), "--model", str(model),
                                                             "--no-progress"]))
        shutil.rmtree(fresh, ignore_errors=True)
    result = {"minutes": minutes, "frames": frames, "fps": round(fps, 3), "size": size,
              "faces": manifest.get("crops"), "people": len(manifest.get("people", [])),
              "tracks": len(manifest.get("tracks", [])), "manifest_mb": manifest_mb,
              "sse-predict": predict, "faces_reused_by_predict": faces_kept, "repeat": repeat}
    if faces is not None:
        result["sse-preprocess"] = faces
    if whole_runs:
        result["sse-predict end to end"] = repeated(whole_runs)
    if not keep:
        video.unlink(missing_ok=True)
    return result


def render(runs: dict) -> str:
    from bench_faces import cpu_model
    lines = ["## Long videos: peak memory and speed (bench/bench_long_video.py)", "",
             "The shared clip `short_hamilton_clip.mp4` (640x360, 275 frames at 29.97 frames/s) looped to N minutes with "
             "OpenCV in a temporary folder (a shot cut at every loop: tracks end there, people are joined across "
             "the cuts by identity). Each command runs in its own process; peak RSS is that process's "
             "`ru_maxrss`; frames/s are source frames over the command's wall time (start, imports and model "
             "loading included). The peak of an `sse-predict` command moves by tens of MB from one run to the "
             "next on this machine: each runs `--repeat` times, the lowest peak counts, every peak is "
             "shown in brackets, the seconds are the fastest run's. `sse-predict` runs on the folder "
             "`sse-preprocess --faces all` has just "
             "written (its face pipeline finds the video done) with the shipped ensemble only (`--model "
             "models/fer2013_ensemble.json`, three members each cutting its own 48x48 crop); \"sse-predict end to "
             "end\" is the same command into an empty folder (face pipeline included, one process).", ""]
    for label, entry in runs.items():
        lines += [f"### {label}", "", entry.get("note", ""), "",
                  f"Machine: {entry.get('machine', cpu_model())}, {entry.get('cores', os.cpu_count())} cores, "
                  f"Python {entry.get('python', platform.python_version())}; measured {entry.get('date', '?')}, "
                  f"load average {entry.get('load', '?')} (a shared machine: the CPU seconds say more than the "
                  "wall seconds). Command: `" + entry.get("command", "") + "`.", "",
                  "| minutes | source frames | faces (crops) | tracks | people | manifest MB | sse-preprocess peak RSS MB "
                  "| frames/s (CPU s) | sse-predict on its faces: peak RSS MB | frames/s (CPU s) | sse-predict end to "
                  "end: peak RSS MB | frames/s (CPU s) |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        rows = sorted(entry["runs"], key=lambda r: r["minutes"])
        tools = [t for t in ("sse-preprocess", "sse-predict", "sse-predict end to end") if all(t in r for r in rows)]

        def cell(r: dict, tool: str) -> str:
            if tool not in r:
                return "not run | not run"
            m = r[tool]
            peaks = m.get("peak_rss_mb_runs", [m["peak_rss_mb"]])
            peak = f"{min(peaks):.0f}" + (f" ({'/'.join(f'{x:.0f}' for x in peaks)})" if len(peaks) > 1 else "")
            return f"{peak} | {r['frames'] / m['seconds']:.1f} ({m['cpu_seconds']:.0f})"

        for r in rows:
            lines.append(f"| {r['minutes']:g} | {r['frames']} | {r['faces']} | {r['tracks']} | {r['people']} | "
                         f"{r['manifest_mb']} | {cell(r, 'sse-preprocess')} | {cell(r, 'sse-predict')} | "
                         f"{cell(r, 'sse-predict end to end')} |"
                         + ("" if r.get("faces_reused_by_predict", True) else " (predict redid the faces)"))
        if len(rows) > 1:
            a, b = rows[0], rows[-1]
            span = b["minutes"] - a["minutes"]
            growth = [f"{tool} {(b[tool]['peak_rss_mb'] - a[tool]['peak_rss_mb']) / span:+.1f} MB per minute "
                      f"of video ({(b[tool]['peak_rss_mb'] - a[tool]['peak_rss_mb']) * 1024 / max(1, b['frames'] - a['frames']):+.1f}"
                      " KB per source frame)" for tool in tools]
            lines += ["", f"Peak RSS from {a['minutes']:g} to {b['minutes']:g} minutes: " + "; ".join(growth) + "."]
        if any(not r[t].get("launcher") for r in rows for t in tools if t != "sse-preprocess"):
            lines += ["", "Measured without the launcher: the commands were started by the benchmark itself, which "
                          "had read the whole manifest (about 7 times its size in Python objects) before the "
                          "sse-predict commands, and a command's ru_maxrss includes the high-water mark of the "
                          "process that started it: an sse-predict peak above the benchmark's own size is "
                          "sse-predict's, one at it (the long lengths: 20 minutes and more) is the benchmark's "
                          "(the sse-preprocess of the first length ran before any manifest was read)."]
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, nargs="+", default=[1, 10, 60], help="lengths (default 1 10 60)")
    p.add_argument("--clip", type=Path, default=DEFAULT_CLIP)
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="sse-predict's --model (default: the shipped ensemble)")
    p.add_argument("--repo", type=Path, default=REPO, help="the checkout whose tools run (default: this one)")
    p.add_argument("--label", default="this checkout", help="name of the measured code in the results")
    p.add_argument("--note", default="", help="a sentence shown under the label (what was run, what was left)")
    p.add_argument("--repeat", type=int, default=3,
                   help="runs of each sse-predict command (the lowest peak counts; default 3); sse-preprocess runs once")
    p.add_argument("--add", action="store_true",
                   help="keep the label's rows of other lengths (the lengths run now replace those of the same "
                        "length); without it the label's rows are replaced")
    p.add_argument("--no-end-to-end", dest="end_to_end", action="store_false",
                   help="leave out 'sse-predict end to end' (a second full face pipeline pass; its cells show 'not run')")
    p.add_argument("--work", type=Path,
                   help="keep the looped videos and their faces here and reuse them when finished (default: a "
                        "temporary folder, removed)")
    args = p.parse_args()
    if not args.clip.is_file():
        print(f"clip not found: {args.clip}", file=sys.stderr)
        return 1
    from bench_faces import cpu_model
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench_long_video_") as tmp:
        work = args.work.resolve() if args.work else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        for minutes in args.minutes:
            result = measure(args.repo.resolve(), args.clip, args.model.resolve(), minutes, work, args.repeat,
                             args.end_to_end, keep=args.work is not None)
            runs.append(result)
            print(json.dumps(result), flush=True)
    stored = json.loads(RESULTS_JSON.read_text()) if RESULTS_JSON.is_file() else {}
    command = "python bench/bench_long_video.py --minutes " + " ".join(f"{m:g}" for m in args.minutes)
    if args.repeat != 3:
        command += f" --repeat {args.repeat}"
    if args.model.resolve() != DEFAULT_MODEL.resolve():
        command += f" --model {args.model}"
    if args.repo.resolve() != REPO:
        command += f" --repo {args.repo}"
    if not args.end_to_end:
        command += " --no-end-to-end"
    if args.work:
        command += f" --work {args.work}"
    if args.label != "this checkout":
        command += f" --label '{args.label}'"
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    previous = stored.get(args.label) if args.add else None
    if previous:
        done = {r["minutes"] for r in runs}
        runs = [r for r in previous["runs"] if r["minutes"] not in done] + runs
        command = previous["command"] + "`, then `" + command + " --add"
        load = previous["load"] + ", then " + load
        note = " ".join(x for x in (previous.get("note", ""), args.note) if x)
    else:
        note = args.note
    stored[args.label] = {"runs": runs, "note": note, "machine": cpu_model(), "cores": os.cpu_count(),
                          "python": platform.python_version(), "date": datetime.date.today().isoformat(),
                          "load": load, "command": command}
    write_text(RESULTS_JSON, json.dumps(stored, indent=1) + "\n")
    write_text(RESULTS_MD, render(stored))
    print(f"-> {RESULTS_MD}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
