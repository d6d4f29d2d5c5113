"""sse-preprocess: videos, image folders or an AFEW-style tree -> aligned 128x128 face crops.

    sse-preprocess INPUT... --out DIR [--faces target|all] [--label-csv F] [--gray] [--frontalize] [--jobs N]

Writes DIR/<video id>/ (crops, manifest.json, contact_sheet.png), and, from every finished video in
DIR, DIR/list.txt, DIR/frames.csv, DIR/videos.txt and DIR/labels.txt (see sse.faces.video and
sse.faces.lists for the formats); prints a summary that names every input or frame it could not
use. Re-running with the same settings skips the finished videos made from the same sources (path,
size, time). An --out inside an input folder is left out of the inputs; bad option values (--jobs 0)
are refused before any input is read.

--shard K/N (or torchrun's / srun's rank and world size) processes every N-th input from the K-th
(counted from 0) and leaves the list files alone; once all shares are done, running the same
command as one process skips every finished video and writes the lists over the whole folder.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from caffe.errors import CaffeError
from caffe.launch import add_shard_argument, resolve_shard
from caffe.tools.cli_util import report_error

from .align import ANCHOR_SETS
from .batch import discover_outside, quiet_decoders, run_batch
from .detect import SECOND_DETECTORS
from .errors import FacesError
from .inputs import IMAGE_FOLDER_MODES
from .pipeline import FACES_MODES, PipelineConfig


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sse-preprocess",
        description="Detect, track, align (or frontalize) the faces of videos and photos into 128x128 crops.",
    )
    parser.add_argument("inputs", nargs="+", type=Path, metavar="INPUT", help="video, image folder or tree of them")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder")
    parser.add_argument(
        "--faces", choices=FACES_MODES, default="target",
        help="target: the person with the most screen presence (default); all: every person, each in DIR/<video>/p<id>/",
    )
    parser.add_argument(
        "--image-folders", choices=IMAGE_FOLDER_MODES, default="auto",
        help="a folder of images is a clip's frames (sequence) or a set of photos; auto: numbered names of one size = sequence",
    )
    parser.add_argument("--label-csv", type=Path, metavar="F", help="CSV of 'video,label' lines (overrides folder names)")
    parser.add_argument("--gray", action="store_true", help="grayscale crops (default: colour)")
    parser.add_argument("--frontalize", action="store_true", help="frontalize instead of similarity alignment")
    parser.add_argument("--jobs", type=int, default=1, metavar="N", help="worker processes (default 1)")
    parser.add_argument("--size", type=int, default=128, help="crop side in pixels (default 128)")
    parser.add_argument("--stride", type=int, default=1, help="use every N-th frame (default 1)")
    parser.add_argument("--detect-every", type=int, default=5, metavar="N", help="run the detector every N sampled frames (default 5)")
    parser.add_argument("--upsample", type=int, default=1, help="HOG detector upsampling (default 1)")
    parser.add_argument("--detect-width", type=int, default=640, help="downscale wider frames to this width for detection (0: never)")
    parser.add_argument("--second-detector", choices=SECOND_DETECTORS, default="none", help="detector for frames HOG finds nothing in")
    parser.add_argument("--photo-detector", choices=SECOND_DETECTORS, default="mmod",
                        help="second detector on single photos, where HOG finds nothing (default mmod: dlib's CNN)")
    parser.add_argument("--max-gap", type=int, default=5, help="interpolate target gaps up to this many frames (default 5)")
    parser.add_argument("--psr-threshold", type=float, default=7.0, help="correlation tracker loss threshold (default 7)")
    parser.add_argument("--anchors", choices=ANCHOR_SETS, default="eyes", help="similarity alignment anchors (default eyes)")
    parser.add_argument(
        "--mirror-yaw", type=float, nargs=2, default=(15.0, 40.0), metavar=("START", "FULL"),
        help="frontalize: mirror the turned-away half from |yaw| START (none) to FULL degrees (all); default 15 40",
    )
    parser.add_argument("--landmarks-model", type=Path, metavar="PATH", help="shape_predictor_68_face_landmarks.dat to use")
    parser.add_argument("--identity-model", type=Path, metavar="PATH", help="dlib_face_recognition_resnet_model_v1.dat to use")
    parser.add_argument(
        "--identity-threshold", type=float, default=0.6, metavar="D",
        help="face descriptor distance below which two track fragments are one person (default 0.6)",
    )
    add_shard_argument(parser, "videos")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--traceback", action="store_true", help="show the traceback of an error")
    return parser


def check_options(args: argparse.Namespace) -> None:
    """Refuse option values the pipeline cannot use, before any input is read (one-line error)."""
    for flag, value, least in (("--jobs", args.jobs, 1), ("--stride", args.stride, 1),
                               ("--detect-every", args.detect_every, 1), ("--size", args.size, 16),
                               ("--upsample", args.upsample, 0), ("--detect-width", args.detect_width, 0),
                               ("--max-gap", args.max_gap, 0)):
        if value < least:
            raise ValueError(f"{flag} must be at least {least}, got {value}")
    for flag, value in (("--psr-threshold", args.psr_threshold), ("--identity-threshold", args.identity_threshold),
                        ("--mirror-yaw", args.mirror_yaw[0]), ("--mirror-yaw", args.mirror_yaw[1])):
        if value != value:
            raise ValueError(f"{flag} must be a number, got {value}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet_decoders()
    try:
        check_options(args)
        config = PipelineConfig(
            stride=args.stride,
            detect_every=args.detect_every,
            upsample=args.upsample,
            detect_width=args.detect_width,
            second_detector=args.second_detector,
            photo_detector=args.photo_detector,
            psr_threshold=args.psr_threshold,
            max_gap=args.max_gap,
            size=args.size,
            gray=args.gray,
            frontalize=args.frontalize,
            anchors=args.anchors,
            mirror_yaw_start=args.mirror_yaw[0],
            mirror_yaw_full=args.mirror_yaw[1],
            faces=args.faces,
            identity_threshold=args.identity_threshold,
            landmarks_model=str(args.landmarks_model) if args.landmarks_model else None,
            identity_model=str(args.identity_model) if args.identity_model else None,
        )
        shard = resolve_shard(args.shard)
        jobs = shard.select(discover_outside(args.inputs, args.out, args.label_csv, args.image_folders))
        summary = run_batch(
            jobs, args.out, config, args.jobs, progress=False if args.no_progress else None, lists=shard.count == 1
        )
    except (FacesError, CaffeError, ValueError, OSError, KeyboardInterrupt) as exc:
        return report_error("sse-preprocess", exc, args.traceback)
    print(summary.text())
    if shard.count > 1:
        print(
            f"this was shard {shard} ({shard.source}) of the inputs; once every shard is done, run the same command "
            "as one process: it skips the finished videos and writes the list files"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
