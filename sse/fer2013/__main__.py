"""``python -m sse.fer2013 prepare | framing | stages | nets | next | curve | select | ship | ensemble``: the
FER2013 recipe's steps."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import MEMBERS, Fer2013Error, get_member, make_nets, prepare
from .data import load_split
from .framing import FER2013_FRAMING, cached_landmarks, fit_framing
from .recipe import next_stage, resume_flag
from .ship import build_ensemble, describe_machine, score_snapshots, select, ship


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sse.fer2013", description=__doc__)
    p.add_argument("--data", default="../shared/data/fer2013", help="folder of the FER2013 .npz splits")
    p.add_argument("--work", default="work/fer2013", help="LMDBs, nets and snapshots")
    p.add_argument("--models", default="models", help="where shipped model folders go")
    sub = p.add_subparsers(dest="command", required=True)
    prep = sub.add_parser("prepare", help="LMDBs of the three splits and data.json")
    prep.add_argument("--raw", action="store_true", help="FER2013's own pictures instead of the shipped models' "
                      "crop (sse.fer2013.framing.FER2013_FRAMING through the face pipeline)")
    for name, what in (("stages", "the max_iter of each stage of one model's schedule"),
                       ("nets", "prototxts and solver of one model"),
                       ("next", "write the solver of the next stage to train; print it, then the flag that starts it "
                                 "(--snapshot=STATE or --weights=WARM_START)"),
                       ("curve", "score the new snapshots on PublicTest (during training too)"),
                       ("select", "score every snapshot on PublicTest, the best once on PrivateTest"),
                       ("ship", "write models/fer2013_<model>/ with its card")):
        cmd = sub.add_parser(name, help=what)
        cmd.add_argument("member", choices=sorted(MEMBERS))
        if name == "nets":
            cmd.add_argument("--stage", type=int, default=-1, help="the stage's solver (default: the last)")
        if name == "ship":
            cmd.add_argument("--log", required=True, help="the caffe train log of the model")
            cmd.add_argument("--machine", default="", help="the machine it trained on, for the card")
    sub.add_parser("framing", help="the median framing of the Training faces the detector finds (FER2013_FRAMING)")
    ens = sub.add_parser("ensemble", help="fusion weights of shipped models, searched on PublicTest")
    ens.add_argument("members", nargs="+", choices=sorted(MEMBERS))
    args = p.parse_args(argv)
    try:
        if args.command == "prepare":
            print(json.dumps(prepare(args.data, args.work, None if args.raw else FER2013_FRAMING)))
        elif args.command == "framing":
            faces, _ = load_split(args.data, "Training")
            landmarks, found = cached_landmarks(faces, Path(args.work) / "landmarks_training.npz",
                                                lambda m: print(m, file=sys.stderr, flush=True))
            print(json.dumps(fit_framing(landmarks[found]).to_json()))
        elif args.command == "stages":
            print(" ".join(str(it) for it in get_member(args.member).stages))
        elif args.command == "nets":
            for path in make_nets(get_member(args.member), args.work, args.stage).values():
                print(path)
        elif args.command == "next":
            step = next_stage(get_member(args.member), args.work)
            if step is not None:
                stage, state = step
                member = get_member(args.member)
                print(make_nets(member, args.work, stage)["solver"])
                flag = resume_flag(member, args.work, state)
                if flag:
                    print(flag)
        elif args.command == "curve":
            for it, acc in score_snapshots(get_member(args.member), args.work, args.data,
                                           log=lambda m: print(m, file=sys.stderr, flush=True)):
                print(f"{it} {acc:.4f}")
        elif args.command == "select":
            sel = select(get_member(args.member), args.work, args.data,
                         log=lambda m: print(m, file=sys.stderr, flush=True))
            print(json.dumps(sel.to_json()))
        elif args.command == "ship":
            print(ship(get_member(args.member), args.work, args.models, args.data, Path(args.log),
                       args.machine or describe_machine()))
        else:
            print(json.dumps(build_ensemble([get_member(m) for m in args.members], args.work,
                                            args.models, args.data), indent=1))
    except Fer2013Error as exc:
        print(f"sse.fer2013: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
