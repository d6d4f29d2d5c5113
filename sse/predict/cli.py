"""sse-predict: videos, photos and folders of either -> every face's emotions, per frame and per person.

    sse-predict INPUT... --out DIR [--model FOLDER | ENSEMBLE.json | DEPLOY CAFFEMODEL MEAN]...
                [--tta none|mirror|tencrop] [--annotate] [--jobs N]

Steps: the face pipeline with every person kept (``sse-preprocess --faces all`` into DIR/faces/,
resumable as sse-preprocess is), then every model on every crop (sse.predict.models says which),
then per video DIR/<video id>/ (files in sse.predict.video), and for the whole run
DIR/predictions.csv (every video's rows, inputs in order) and DIR/summary.json (every video's
summary, and every input that could not be used with the reason). A rerun skips the videos whose
summary was written with the same models and settings from the same source (path, size and
modification time: another folder's x.jpg, or a changed x.jpg, is redone). DIR inside an input
folder is not read as input. Options and models are checked before any video is read.

--shard K/N (or torchrun's / srun's rank and world size) takes every N-th video from the K-th
(counted from 0) and writes its videos' folders only; once every shard is done, the same command
run as one process skips the finished videos and writes the lists of DIR/faces/,
DIR/predictions.csv and DIR/summary.json over all of them.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
import traceback
from pathlib import Path
from typing import Sequence

from tqdm import tqdm

from caffe.atomic import atomic_path
from caffe.errors import CaffeError
from caffe.launch import add_shard_argument, resolve_shard
from sse.faces import atomic
from sse.faces.batch import discover_outside, quiet_decoders, run_batch
from sse.faces.detect import SECOND_DETECTORS
from sse.faces.errors import FacesError
from sse.faces.inputs import IMAGE_FOLDER_MODES
from sse.faces.pipeline import PipelineConfig
from sse.faces.video import read_manifest
from sse.shipped import TTA_MODES, ModelError

from .models import load_scorers, primary
from .video import PREDICTIONS, PREDICTIONS_HEADER, SUMMARY, is_done, predict_video

FACES_DIR = "faces"
LEFT_OUT_LINES = 20


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sse-predict", description=__doc__.split("\n\n")[0],
                                epilog="examples:\n  sse-predict clip.mp4 photos/ --out emotions --annotate\n"
                                       "  sse-predict clip.mp4 --out e --model demo_out/nets/SSE-HoloNet/SSE_holonet_deploy.prototxt "
                                       "demo_out/snapshots/holonet_iter_400.caffemodel demo_out/mean.binaryproto",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", type=Path, metavar="INPUT", help="video, photo, or folder of either")
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder")
    p.add_argument("--model", action="append", nargs="+", metavar="PATH",
                   help="a model folder, an ensemble .json, or DEPLOY CAFFEMODEL MEAN ('-' for no mean); "
                        "repeat for several (default: every model and ensemble in models/)")
    p.add_argument("--tta", choices=TTA_MODES, default="none",
                   help="test-time augmentation: none, mirror (face + mirror image), tencrop (default none)")
    p.add_argument("--annotate", action="store_true", help="also write annotated.mp4 (annotated.png for a photo)")
    p.add_argument("--jobs", type=int, default=1, metavar="N", help="face pipeline worker processes (default 1)")
    p.add_argument("--batch", type=int, default=128, help="faces per forward pass (default 128)")
    f = p.add_argument_group("face pipeline (as sse-preprocess)")
    f.add_argument("--stride", type=int, default=1, help="use every N-th frame (default 1)")
    f.add_argument("--detect-every", type=int, default=5, metavar="N", help="detector every N sampled frames (default 5)")
    f.add_argument("--size", type=int, default=128, help="crop side in pixels (default 128)")
    f.add_argument("--frontalize", action="store_true", help="frontalize instead of similarity alignment")
    f.add_argument("--image-folders", choices=IMAGE_FOLDER_MODES, default="auto",
                   help="a folder of images is the frames of one clip ('sequence'), a set of photos ('photos'), "
                        "or guessed from its files ('auto', the default)")
    f.add_argument("--photo-detector", choices=SECOND_DETECTORS, default="mmod",
                   help="second detector on single photos, where HOG finds nothing (default mmod: dlib's CNN)")
    f.add_argument("--landmarks-model", type=Path, metavar="PATH", help="shape_predictor_68_face_landmarks.dat")
    f.add_argument("--identity-model", type=Path, metavar="PATH", help="dlib_face_recognition_resnet_model_v1.dat")
    add_shard_argument(p, "videos")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--traceback", action="store_true", help="show the traceback of an error")
    return p


def usable_inputs(inputs: list[Path], image_folders: str = "auto", out: Path | None = None
                  ) -> tuple[list[Path], list[tuple[str, str]]]:
    """The inputs discovery accepts (outside the output folder ``out``: see
    sse.faces.batch.discover_outside), and (input, reason) for each one it refuses."""
    good, bad = [], []
    for path in inputs:
        try:
            _discover([path], image_folders, out)
            good.append(path)
        except (FacesError, ValueError, OSError) as exc:
            bad.append((str(path), str(exc)))
    return good, bad


def _discover(inputs: list[Path], image_folders: str, out: Path | None) -> list:
    if out is None:
        from sse.faces.inputs import discover
        return discover(inputs, image_folders=image_folders)
    jobs = discover_outside(inputs, out, image_folders=image_folders, output_roots=[out, out / FACES_DIR])
    ids = {job.video_id: job.path for job in jobs}
    for job in jobs:
        inner = job.video_id[len(FACES_DIR) + 1:] if job.video_id.startswith(FACES_DIR + "/") else None
        if inner in ids:
            raise FacesError(f"{job.path} and {ids[inner]} map to one output folder {out / job.video_id} (its "
                             f"predictions, and the face pipeline's crops of {inner}): rename one of them")
    return jobs


def check_options(args: argparse.Namespace) -> None:
    """Refuse option values that cannot work, before any model is loaded or video read."""
    for flag, value, least in (("--batch", args.batch, 1), ("--jobs", args.jobs, 1), ("--stride", args.stride, 1),
                               ("--detect-every", args.detect_every, 1), ("--size", args.size, 16)):
        if value < least:
            raise ValueError(f"{flag} must be at least {least}, got {value}")


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    check_options(args)
    quiet_decoders()
    scorers = load_scorers(args.model, args.batch)
    main_scorer = primary(scorers)
    config = PipelineConfig(stride=args.stride, detect_every=args.detect_every, size=args.size,
                            frontalize=args.frontalize, faces="all", photo_detector=args.photo_detector,
                            landmarks_model=str(args.landmarks_model) if args.landmarks_model else None,
                            identity_model=str(args.identity_model) if args.identity_model else None)
    shard = resolve_shard(args.shard)
    good, refused = usable_inputs(args.inputs, args.image_folders, args.out)
    jobs = shard.select(_discover(good, args.image_folders, args.out)) if good else []
    out = args.out
    faces_dir = out / FACES_DIR
    show = sys.stderr.isatty() and not args.no_progress
    failures = [{"input": path, "status": "refused", "reason": reason} for path, reason in refused]
    if jobs:
        run_batch(jobs, faces_dir, config, args.jobs, progress=show, lists=shard.count == 1)
    settings = {"models": [s.name for s in scorers], "primary": main_scorer.name, "tta": args.tta,
                "annotate": args.annotate, "faces": config.output_settings()}
    summaries, csv_files, frames = [], [], 0
    left_out: list[dict] = []  # tracks the face pipeline kept out of people, and why
    readings: list[str] = []  # how each image folder was read (frames of a clip or photos)
    for job in tqdm(jobs, unit="video", disable=not show, file=sys.stderr, desc="emotions"):
        manifest = read_manifest(faces_dir / job.video_id, frames=False)  # predict_video streams the frames
        if manifest is None or manifest["status"] != "ok":
            status = "error" if manifest is None else manifest["status"]
            reason = "the face pipeline left no manifest" if manifest is None else manifest.get("reason", "")
            failures.append({"input": str(job.path), "video": job.video_id, "status": status, "reason": reason})
            continue
        frames += manifest.get("frames_sampled", 0)
        for track in manifest.get("left_out", []):
            left_out.append({"input": str(job.path), "video": job.video_id, **track})
        if job.reading and job.reading not in readings:
            readings.append(job.reading)
        for bad in manifest.get("undecodable", []):
            failures.append({"input": bad["file"] or str(job.path), "video": job.video_id, "frame": bad["index"],
                             "status": "undecodable", "reason": bad["reason"]})
        video_out = out / job.video_id
        try:
            if not is_done(video_out, settings, manifest):
                predict_video(manifest, faces_dir, video_out, scorers, main_scorer, args.tta, settings, args.annotate)
            summary = _read_json(video_out / SUMMARY)
            open(video_out / PREDICTIONS, "rb").close()  # there to be copied into the run's file
            summaries.append(summary)
            csv_files.append(video_out / PREDICTIONS)
        except (ModelError, CaffeError, OSError, ValueError) as exc:
            failures.append({"input": str(job.path), "video": job.video_id, "status": "error",
                             "reason": f"{type(exc).__name__}: {exc}"})
    if shard.count > 1:
        print(report(summaries, failures, frames, time.perf_counter() - started, out, left_out, readings))
        print(f"this was shard {shard} ({shard.source}) of the videos; once every shard is done, run the "
              "same command as one process: it skips the finished videos and writes the run's files")
        return 0 if summaries or not failures else 1
    with atomic_path(out / PREDICTIONS) as tmp, open(tmp, "wb") as run_csv:  # the videos' rows, file after file
        run_csv.write((",".join(PREDICTIONS_HEADER) + "\n").encode("utf-8"))
        for path in csv_files:
            with open(path, "rb") as video_csv:
                video_csv.readline()  # its header
                shutil.copyfileobj(video_csv, run_csv)
    seconds = time.perf_counter() - started
    atomic.write_json(out / SUMMARY, {"format": "sse.predict.run/1", "settings": settings, "videos": summaries,
                                      "failures": failures, "left_out": left_out, "readings": readings,
                                      "frames": frames, "seconds": round(seconds, 2)})
    print(report(summaries, failures, frames, seconds, out, left_out, readings))
    return 0 if summaries or not failures else 1


def report(summaries: list[dict], failures: list[dict], frames: int, seconds: float, out: Path,
           left_out: Sequence[dict] = (), readings: Sequence[str] = ()) -> str:
    """What the run found: one line per person, one per input or frame it could not use, one per
    track left out of people (at most ``LEFT_OUT_LINES``, then a count), one per image folder read."""
    lines = [f"{len(summaries)} videos/photos, {frames} frames in {seconds:.1f} s -> {out}/"]
    lines += [f"  {reading}" for reading in readings]
    for s in summaries:
        for person in s["people"]:
            lines.append(f"  {s['video']} person {person['person']}: {person['dominant']} "
                         f"{person['mean'][person['dominant']]:.2f} over {person['frames']} frames")
    for f in failures:
        where = f" frame {f['frame']}" if "frame" in f else ""
        lines.append(f"  not used: {f['input']}{where}: {f['status']}: {f['reason']}")
    for t in left_out[:LEFT_OUT_LINES]:
        lines.append(f"  left out of people: {t['video']} track {t['track']} (frames {t['first']}-{t['last']}): "
                     f"{t['reason']}")
    if len(left_out) > LEFT_OUT_LINES:
        lines.append(f"  ... and {len(left_out) - LEFT_OUT_LINES} more tracks left out (summary.json 'left_out')")
    return "\n".join(lines)


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except (ModelError, FacesError, CaffeError, ValueError, OSError) as exc:
        if args.traceback:
            traceback.print_exc()
        print(f"sse-predict: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
