"""``leveldb2mat``: features dumped by extract_features (LevelDB/LMDB of Datum) -> a MATLAB .mat file.

Same positional arguments as the SSE release's leveldb2mat.py; the matrix has one row per image
(rows in key order) and ``dim`` columns, stored as the variable ``feats`` (double by default).

Memory: the matrix it writes (rows x dim x 8 bytes for double, 4 for ``--single``), read as
float32 (twice that at the peak of the reading: ``featdb.read_features``; while the double copy is
made the float32 one is held too), its row numbers (8 bytes a row) and one chunk of records (about
64 MB); the keys are not kept. The .mat is written from that matrix (v5 by SciPy,
v7.3 by h5py). A database of images (uint8 ``data``, dim = C x H x W) becomes that many float32
or float64 values per image: the .mat holds them, so does memory."""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from sse.fusion import cliutil

EPILOG = """\
examples:
  # the release's call: 201 batches of 29 images, 7 probabilities each
  python leveldb2mat.py ../examples/sse_resnet_features/ 201 29 7 features.mat
  # every key, whatever their number; LMDB detected from data.mdb
  python leveldb2mat.py --all feat_prob_lmdb 7 features.mat
  # load it:  MATLAB/Octave: load('features.mat'); size(feats)    SciPy: scipy.io.loadmat('features.mat')['feats']
.mat v5 is written unless the matrix passes 2 GB; then v7.3 (HDF5; MATLAB, Octave, h5py read it).
Memory: the whole matrix, read as float32 and then copied to double (at the peak about 12 bytes per
value, 8 with --single), 8 bytes a row and one chunk of records (about 64 MB); the keys are not kept."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="leveldb2mat.py", description=__doc__.split("\n\n")[0], epilog=EPILOG,
        usage="%(prog)s [options] db batch_num batch_size dim out.mat\n"
              "       %(prog)s --all [options] db dim out.mat",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("args", nargs="+", metavar="ARG",
                        help="database folder, number of batches, batch size (rows = their product), "
                             "values per Datum, output file; with --all: db dim out.mat")
    parser.add_argument("--all", action="store_true",
                        help="read every key (0..n-1) instead of batch_num x batch_size rows")
    backend = parser.add_mutually_exclusive_group()
    backend.add_argument("--lmdb", dest="backend", action="store_const", const="lmdb",
                         help="the database is LMDB (default: detected)")
    backend.add_argument("--leveldb", dest="backend", action="store_const", const="leveldb",
                         help="the database is LevelDB (default: detected)")
    parser.add_argument("--var", default="feats", help="MATLAB variable name (default: feats)")
    parser.add_argument("--single", action="store_true", help="store single precision instead of double")
    parser.add_argument("--format", choices=("auto", "5", "7.3"), default="auto",
                        help="MAT-file version: 5, 7.3 (HDF5) or auto = 7.3 only above 2 GB (default)")
    parser.add_argument("--v7.3", dest="format", action="store_const", const="7.3",
                        help="same as --format 7.3")
    parser.add_argument("--quiet", action="store_true", help="no progress bar and no summary line")
    cliutil.add_common_flags(parser)
    return parser


def _positionals(parser: argparse.ArgumentParser, args: argparse.Namespace) -> tuple[str, int | None, int, str]:
    values = args.args
    if args.all and len(values) == 3:
        db, dim, out = values
        count = None
    elif not args.all and len(values) == 5:
        db, batch_num, batch_size, dim, out = values
        count = _positive(parser, "batch_num", batch_num) * _positive(parser, "batch_size", batch_size)
    else:
        parser.error("expected 'db batch_num batch_size dim out.mat', or 'db dim out.mat' with --all")
    if not args.var.isidentifier():
        parser.error(f"--var {args.var!r} is not a valid MATLAB variable name")
    return db, count, _positive(parser, "dim", dim), out


def _positive(parser: argparse.ArgumentParser, name: str, text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        parser.error(f"{name} must be a positive integer, got {text!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()

    def body(args: argparse.Namespace) -> None:
        from sse.fusion.featdb import read_features, save_mat
        db, count, dim, out = _positionals(parser, args)
        start = time.perf_counter()
        features = read_features(db, dim, count, args.backend, progress=False if args.quiet else None,
                                 keep_keys=False)
        matrix = features.data if args.single else features.data.astype(np.float64)
        del features  # the float32 matrix, once a float64 copy is made
        version = save_mat(out, {args.var: matrix}, args.format)
        if not args.quiet:
            print(f"{out}: {args.var} {matrix.shape[0]}x{matrix.shape[1]} {matrix.dtype}, "
                  f"MAT v{version}, {time.perf_counter() - start:.2f} s", file=sys.stderr)

    return cliutil.run(parser, body, argv)
