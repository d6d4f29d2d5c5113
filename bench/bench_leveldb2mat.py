"""Benchmark: leveldb2mat on 1 million 7-dim rows (LevelDB and LMDB, as extract_features writes them),
against the release's per-record approach (Get each key, Datum.ParseFromString, copy float_data).

    python bench/bench_leveldb2mat.py [--rows 1000000] [--dim 7] [--out bench/results/leveldb2mat.md]

Writes a Markdown section (machine, timings, ratios) to --out."""
from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.io

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from caffe.proto import caffe_pb2  # noqa: E402
from sse.fusion.leveldb2mat import main as leveldb2mat  # noqa: E402


def datum_bytes(rows: np.ndarray) -> list[bytes]:
    """Serialized Datum (channels=dim, height=width=1, float_data) per row, built vectorised and
    checked against protobuf's own serialization on a sample."""
    n, dim = rows.shape
    header = bytes([0x08, dim, 0x10, 1, 0x18, 1])
    body = np.empty((n, dim, 5), dtype=np.uint8)
    body[:, :, 0] = 0x35
    body[:, :, 1:] = rows.astype("<f4").view(np.uint8).reshape(n, dim, 4)
    flat = body.reshape(n, dim * 5)
    values = [header + flat[i].tobytes() for i in range(n)]
    for i in (0, n // 2, n - 1):
        datum = caffe_pb2.Datum(channels=dim, height=1, width=1)
        datum.float_data.extend(rows[i].tolist())
        assert datum.SerializeToString() == values[i]
    return values


def write_leveldb(path: Path, values: list[bytes]) -> None:
    import plyvel
    db = plyvel.DB(str(path), create_if_missing=True, error_if_exists=True)
    with db.write_batch() as batch:
        for i, v in enumerate(values):
            batch.put(b"%010d" % i, v)
    db.close()


def write_lmdb(path: Path, values: list[bytes]) -> None:
    import lmdb
    env = lmdb.open(str(path), map_size=1 << 30)
    with env.begin(write=True) as txn:
        for i, v in enumerate(values):
            txn.put(b"%010d" % i, v, append=True)
    env.close()


def release_method(path: Path, rows: int, dim: int) -> np.ndarray:
    """What the original leveldb2mat.py did: one Get and one ParseFromString per key."""
    import plyvel
    db = plyvel.DB(str(path))
    feats = np.zeros((rows, dim))
    datum = caffe_pb2.Datum()
    for i in range(rows):
        datum.ParseFromString(db.get(b"%010d" % i))
        feats[i, :] = datum.float_data
    db.close()
    scipy.io.savemat(str(path) + "_release.mat", {"feats": feats})
    return feats


def timed(fn, *args) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - start, result


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=3, help="runs per method; the best is reported")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "leveldb2mat.md"))
    args = parser.parse_args()
    rows = np.random.default_rng(0).dirichlet(np.ones(args.dim), size=args.rows).astype(np.float32)
    with tempfile.TemporaryDirectory(dir=Path(args.out).parent) as tmp:
        tmp = Path(tmp)
        values = datum_bytes(rows)
        write_leveldb(tmp / "leveldb", values)
        write_lmdb(tmp / "lmdb", values)
        del values
        shape = [str(args.rows // 1000), "1000", str(args.dim)]
        results = {"leveldb": [], "lmdb": [], "release": [], "command": []}
        script = Path(__file__).resolve().parents[1] / "leveldb2mat" / "leveldb2mat.py"
        for _ in range(args.repeat):  # interleaved, so background load hits every method alike
            for name, db in (("leveldb", tmp / "leveldb"), ("lmdb", tmp / "lmdb")):
                out = tmp / f"{name}.mat"
                seconds, code = timed(leveldb2mat, [str(db), *shape, str(out), "--quiet"])
                assert code == 0
                assert np.array_equal(scipy.io.loadmat(out)["feats"], rows.astype(np.float64))
                results[name].append(seconds)
            seconds, run = timed(subprocess.run, [sys.executable, str(script), str(tmp / "leveldb"), *shape,
                                                  str(tmp / "command.mat"), "--quiet"])
            assert run.returncode == 0
            results["command"].append(seconds)
            seconds, feats = timed(release_method, tmp / "leveldb", args.rows, args.dim)
            assert np.array_equal(feats, rows.astype(np.float64))
            results["release"].append(seconds)
        runs = {k: ", ".join(f"{t:.2f}" for t in v) for k, v in results.items()}
        results = {k: min(v) for k, v in results.items()}
    lines = [
        "## leveldb2mat",
        "",
        f"Machine: {cpu_model()}, {len(__import__('os').sched_getaffinity(0))} cores usable, "
        f"Python {platform.python_version()}. Command: `python bench/bench_leveldb2mat.py "
        f"--rows {args.rows} --dim {args.dim} --repeat {args.repeat}`; best of {args.repeat} interleaved runs "
        f"(the machine is shared, so single runs vary).",
        f"Database: {args.rows:,} Datum of {args.dim} floats (channels={args.dim}, height=width=1, "
        f"float_data), keys %010d, as extract_features writes them. Times include reading the database, "
        f"decoding, and writing `.mat` v5 (double) with the result checked equal to the input.",
        "",
        "| method | best time (s) | all runs (s) | vs release method |",
        "|---|---|---|---|",
        f"| leveldb2mat, LevelDB | {results['leveldb']:.2f} | {runs['leveldb']} | "
        f"{results['release'] / results['leveldb']:.1f}x faster |",
        f"| leveldb2mat, LMDB | {results['lmdb']:.2f} | {runs['lmdb']} | "
        f"{results['release'] / results['lmdb']:.1f}x faster |",
        f"| `python leveldb2mat/leveldb2mat.py` as a new process, LevelDB (interpreter start and imports "
        f"included) | {results['command']:.2f} | {runs['command']} | {results['release'] / results['command']:.1f}x faster |",
        f"| release method (Get + Datum.ParseFromString per key), LevelDB | {results['release']:.2f} | "
        f"{runs['release']} | 1.0x |",
        "",
    ]
    text = "\n".join(lines)
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
