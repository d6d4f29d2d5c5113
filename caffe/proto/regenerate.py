"""Regenerate caffe_pb2.py from caffe.proto with grpcio-tools' bundled protoc.

Run `python -m caffe.proto.regenerate` after editing caffe.proto, then commit both files. The
generated module is committed so that using the package needs only the protobuf runtime. This file
imports nothing from the package, so `python caffe/proto/regenerate.py` works too, even when
`import caffe` fails because caffe_pb2.py is missing or stale.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

PROTO_DIR = Path(__file__).resolve().parent
PROTO_FILE = PROTO_DIR / "caffe.proto"
MODULE_NAME = "caffe_pb2.py"


def generate(out_dir: Path) -> Path:
    """Run protoc on caffe.proto, writing caffe_pb2.py into `out_dir`; return the written path."""
    try:
        from grpc_tools import protoc
    except ImportError as exc:
        raise RuntimeError("grpcio-tools is needed to regenerate caffe_pb2.py: pip install grpcio-tools") from exc
    out_dir.mkdir(parents=True, exist_ok=True)
    status = protoc.main(["protoc", f"-I{PROTO_DIR}", f"--python_out={out_dir}", PROTO_FILE.name])
    if status != 0:
        raise RuntimeError(f"protoc failed on {PROTO_FILE} (exit status {status})")
    return out_dir / MODULE_NAME


def regenerate(target_dir: Path = PROTO_DIR) -> Path:
    """Generate caffe_pb2.py and move it into `target_dir` atomically; return its path."""
    target_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target_dir) as tmp:
        fresh = generate(Path(tmp))
        target = target_dir / MODULE_NAME
        os.replace(fresh, target)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=PROTO_DIR,
                        help="where to write caffe_pb2.py (default: next to caffe.proto)")
    args = parser.parse_args(argv)
    path = regenerate(args.out_dir)
    print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
