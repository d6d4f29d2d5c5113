"""leveldb2mat: Datum databases as extract_features writes them -> .mat files that SciPy, h5py and
GNU Octave load with the right shape and values; bad databases fail naming the key."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import lmdb
import numpy as np
import plyvel
import pytest
import scipy.io

from caffe.proto import caffe_pb2
from sse.fusion.leveldb2mat import main

GOLDEN_CASES = ("datum_db",)

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden" / "datum_db"
OCTAVE = shutil.which("octave-cli")


def write_feature_db(path: Path, features: np.ndarray, backend: str = "leveldb", keys=None) -> None:
    """A database the way extract_features writes one: key %010d, Datum with the blob's
    channels x 1 x 1 and float_data."""
    records = []
    for i, row in enumerate(features):
        datum = caffe_pb2.Datum(channels=len(row), height=1, width=1)
        datum.float_data.extend(row.tolist())
        key = keys[i] if keys is not None else f"{i:010d}"
        records.append((key.encode(), datum.SerializeToString()))
    if backend == "leveldb":
        db = plyvel.DB(str(path), create_if_missing=True, error_if_exists=True)
        with db.write_batch() as batch:
            for key, value in records:
                batch.put(key, value)
        db.close()
    else:
        env = lmdb.open(str(path), map_size=1 << 26)
        with env.begin(write=True) as txn:
            for key, value in records:
                txn.put(key, value)
        env.close()


def _features(rows=12, dim=7, seed=0):
    return np.random.default_rng(seed).dirichlet(np.ones(dim), size=rows).astype(np.float32)


@pytest.mark.parametrize("net", ["lmdb", "imagedata"])
def test_real_caffe_extract_features_dbs_convert_to_recorded_values(tmp_path, net):
    recorded = json.loads((GOLDEN / f"feat_{net}.json").read_text())
    for blob, datums in recorded.items():
        db = tmp_path / blob
        shutil.copytree(GOLDEN / f"feat_{net}_{blob}", db)  # opening a LevelDB writes to its folder
        dim = len(datums[0]["float_data"])
        assert main([str(db), "1", str(len(datums)), str(dim), str(tmp_path / f"{blob}.mat"), "--quiet"]) == 0
        feats = scipy.io.loadmat(tmp_path / f"{blob}.mat")["feats"]
        expected = np.array([d["float_data"] for d in datums], dtype=np.float32)
        assert feats.shape == (len(datums), dim) and feats.dtype == np.float64
        np.testing.assert_array_equal(feats, expected.astype(np.float64))


def test_original_command_line_writes_mat_v5_that_scipy_loads(tmp_path):
    features = _features(12, 7)
    write_feature_db(tmp_path / "db", features)
    out = tmp_path / "features.mat"
    run = subprocess.run([sys.executable, str(ROOT / "leveldb2mat" / "leveldb2mat.py"),
                          str(tmp_path / "db"), "3", "4", "7", str(out)], capture_output=True, text=True,
                         cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert out.read_bytes()[:10] == b"MATLAB 5.0"
    np.testing.assert_array_equal(scipy.io.loadmat(out)["feats"], features.astype(np.float64))


def _octave_matrix(path: Path, var: str) -> tuple[str, np.ndarray]:
    script = (f"s = load('{path}'); x = s.{var}; printf('%s %d %d\\n', class(x), rows(x), columns(x)); "
              f"printf('%.9g\\n', double(x'));")
    run = subprocess.run([OCTAVE, "--no-gui", "--norc", "--quiet", "--eval", script],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    first, *values = run.stdout.splitlines()
    klass, rows, cols = first.split()
    return klass, np.array(values, dtype=np.float64).reshape(int(rows), int(cols))


@pytest.mark.skipif(OCTAVE is None, reason="GNU Octave (octave-cli) not installed")
@pytest.mark.parametrize("version,single", [("5", False), ("5", True), ("7.3", False), ("7.3", True)])
def test_gnu_octave_loads_the_mat_file_with_right_shape_and_values(tmp_path, version, single):
    features = _features(10, 7, seed=1)
    write_feature_db(tmp_path / "db", features)
    out = tmp_path / "features.mat"
    argv = [str(tmp_path / "db"), "2", "5", "7", str(out), "--format", version, "--var", "probs", "--quiet"]
    assert main(argv + (["--single"] if single else [])) == 0
    klass, matrix = _octave_matrix(out, "probs")
    # Octave 7 reads every HDF5 dataset as double (MATLAB keeps single); v5 keeps the class.
    assert klass == ("single" if single and version == "5" else "double")
    assert matrix.shape == (10, 7)
    np.testing.assert_array_equal(matrix.astype(np.float32), features)


def test_forced_v73_is_hdf5_with_matlab_layout(tmp_path):
    features = _features(6, 7)
    write_feature_db(tmp_path / "db", features)
    assert main([str(tmp_path / "db"), "2", "3", "7", str(tmp_path / "f.mat"), "--v7.3", "--quiet"]) == 0
    assert (tmp_path / "f.mat").read_bytes()[:19] == b"MATLAB 7.3 MAT-file"
    with h5py.File(tmp_path / "f.mat", "r") as f:
        assert f["feats"].shape == (7, 6) and f["feats"].attrs["MATLAB_class"] == b"double"
        np.testing.assert_array_equal(f["feats"][()].T, features.astype(np.float64))


def test_lmdb_is_detected_and_all_keys_read_without_counts(tmp_path):
    features = _features(9, 4)
    write_feature_db(tmp_path / "db", features, backend="lmdb")
    assert main(["--all", str(tmp_path / "db"), "4", str(tmp_path / "f.mat"), "--quiet"]) == 0
    np.testing.assert_array_equal(scipy.io.loadmat(tmp_path / "f.mat")["feats"], features.astype(np.float64))
    assert main(["--lmdb", str(tmp_path / "db"), "1", "9", "4", str(tmp_path / "g.mat"), "--quiet"]) == 0


def test_rows_follow_integer_key_order_not_byte_order(tmp_path):
    features = _features(12, 3)
    keys = [str(i) for i in range(12)]  # '10' sorts before '2' as bytes
    write_feature_db(tmp_path / "db", features, keys=keys)
    assert main(["--all", str(tmp_path / "db"), "3", str(tmp_path / "f.mat"), "--quiet"]) == 0
    np.testing.assert_array_equal(scipy.io.loadmat(tmp_path / "f.mat")["feats"], features.astype(np.float64))


@pytest.mark.parametrize("keys,dim,message", [
    ([f"{i:010d}" for i in (0, 1, 2, 4, 5, 6)], 7, "missing key 0000000003"),
    (["0000000000", "0000000001", "1", "0000000002", "0000000003", "0000000004"], 7,
     "keys '0000000001' and '1' both give row 1"),
    ([f"{i:010d}" for i in range(6)], 5, "key '0000000000': Datum holds 7 values in float_data .* expected dim 5"),
    (["0000000000", "abc", "0000000002", "0000000003", "0000000004", "0000000005"], 7,
     "key 'abc' is not an integer index"),
])
def test_bad_database_fails_naming_the_key(tmp_path, capsys, keys, dim, message):
    write_feature_db(tmp_path / "db", _features(6, 7), keys=keys)
    assert main(["--all", str(tmp_path / "db"), str(dim), str(tmp_path / "f.mat"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert __import__("re").search(message, err), err
    assert not (tmp_path / "f.mat").exists()


def test_datum_of_wrong_length_in_the_middle_is_named(tmp_path, capsys):
    write_feature_db(tmp_path / "db", _features(5, 7))
    db = plyvel.DB(str(tmp_path / "db"))
    datum = caffe_pb2.Datum(channels=6, height=1, width=1)
    datum.float_data.extend([0.5] * 6)
    db.put(b"0000000003", datum.SerializeToString())
    db.close()
    assert main([str(tmp_path / "db"), "1", "5", "7", str(tmp_path / "f.mat"), "--quiet"]) == 1
    assert "key '0000000003': Datum holds 6 values" in capsys.readouterr().err


def test_fewer_keys_than_batches_is_a_missing_key_and_more_keys_a_warning(tmp_path, capsys):
    write_feature_db(tmp_path / "db", _features(6, 7))
    assert main([str(tmp_path / "db"), "2", "4", "7", str(tmp_path / "f.mat"), "--quiet"]) == 1
    assert "missing key 0000000006" in capsys.readouterr().err
    assert main([str(tmp_path / "db"), "1", "4", "7", str(tmp_path / "f.mat"), "--quiet"]) == 0
    assert "2 keys at or beyond row 4 ignored" in capsys.readouterr().err
    assert scipy.io.loadmat(tmp_path / "f.mat")["feats"].shape == (4, 7)


def test_missing_database_and_bad_arguments(tmp_path, capsys):
    assert main([str(tmp_path / "nope"), "1", "1", "7", str(tmp_path / "f.mat")]) == 1
    assert "no such database folder" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([str(tmp_path / "nope"), "1", "7", str(tmp_path / "f.mat")])
    with pytest.raises(SystemExit):
        main([str(tmp_path / "nope"), "1", "x", "7", str(tmp_path / "f.mat")])
