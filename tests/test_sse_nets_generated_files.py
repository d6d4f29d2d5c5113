"""script/ holds exactly what sse-gen-nets writes; the command line and its errors."""
from __future__ import annotations

import filecmp
from pathlib import Path

import pytest

from caffe.model_io import read_net, read_solver
from sse.nets.generate import main, write_all
from sse.nets.variants import BACKBONES, VARIANTS

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "script"
RELEASED_FILES = [
    "SSE-HoloNet/SSE_holonet_train.prototxt", "SSE-HoloNet/SSE_holonet_test.prototxt",
    "SSE-HoloNet/SSE_holonet_train_solver.prototxt",
    "SSE-DenseNet/SSE-densenet-121_train.prototxt", "SSE-DenseNet/SSE-densenet-121_test.prototxt",
    "SSE-DenseNet/SSE-densenet-121_train_solver.prototxt",
    "SSE-ResNet/SSE-resnet-50_train.prototxt", "SSE-ResNet/SSE-resnet-50_test.prototxt",
    "SSE-ResNet/SSE-resnet-50_train_solver.prototxt",
]


def relative_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*.prototxt"))


def test_committed_script_is_exactly_the_generator_output(tmp_path):
    written = write_all(tmp_path, net_root="script")
    assert len(written) == len(BACKBONES) * len(VARIANTS) * 4
    assert relative_files(tmp_path) == relative_files(SCRIPT)
    for rel in relative_files(tmp_path):
        assert filecmp.cmp(tmp_path / rel, SCRIPT / rel, shallow=False), f"script/{rel} differs"


def test_released_forms_keep_the_release_file_names():
    for rel in RELEASED_FILES:
        assert (SCRIPT / rel).is_file(), rel


def test_solvers_are_as_released_and_point_at_their_train_net():
    holonet = read_solver(SCRIPT / "SSE-HoloNet/SSE_holonet_train_solver.prototxt")
    assert holonet.net == "script/SSE-HoloNet/SSE_holonet_train.prototxt"
    assert (holonet.base_lr, holonet.lr_policy, holonet.gamma, holonet.stepsize) == \
        (pytest.approx(0.01), "step", pytest.approx(0.3), 20000)
    assert (holonet.max_iter, holonet.weight_decay, holonet.momentum) == \
        (70000, pytest.approx(2e-4), pytest.approx(0.9))
    dense = read_solver(SCRIPT / "SSE-DenseNet/SSE-densenet-121_4conv-c_eltwise_train_solver.prototxt")
    assert dense.lr_policy == "multistep" and not dense.stepvalue
    assert dense.weight_decay == pytest.approx(1e-4)
    assert dense.snapshot_prefix == "models/SSE-DenseNet/SSE_DenseNet_121_4conv-c_eltwise_train"
    resnet = read_solver(SCRIPT / "SSE-ResNet/SSE-resnet-50_train_solver.prototxt")
    assert (resnet.base_lr, resnet.stepsize, resnet.max_iter, resnet.random_seed) == \
        (pytest.approx(1e-3), 5000, 100000, 0)
    for path in SCRIPT.rglob("*_solver.prototxt"):
        solver = read_solver(path)
        assert (REPO / solver.net).is_file(), path


def test_command_line_writes_one_form_with_overrides(tmp_path, capsys):
    code = main(["--backbone", "holonet", "--variant", "original", "--out", str(tmp_path),
                 "--input-size", "64", "--mean-value", "120", "--train-source", "demo/train_lmdb",
                 "--test-list", "demo/test.txt", "--train-batch", "16", "--max-iter", "300",
                 "--solver-mode", "CPU", "--num-classes", "5"])
    assert code == 0
    printed = capsys.readouterr().out.split()
    assert len(printed) == 4
    folder = tmp_path / "SSE-HoloNet"
    train = read_net(folder / "SSE_holonet_original_train.prototxt")
    data = train.layer[0]
    assert (data.data_param.source, data.data_param.batch_size) == ("demo/train_lmdb", 16)
    assert list(data.transform_param.mean_value) == [120] and not data.transform_param.mean_file
    assert [l.inner_product_param.num_output or l.convolution_param.num_output
            for l in train.layer if l.name == "conv_fc4_1_1"] == [5]
    deploy = read_net(folder / "SSE_holonet_original_deploy.prototxt")
    assert list(deploy.layer[0].input_param.shape[0].dim) == [1, 1, 64, 64]
    solver = read_solver(folder / "SSE_holonet_original_train_solver.prototxt")
    assert solver.max_iter == 300 and solver.solver_mode == solver.CPU
    assert solver.net == f"{tmp_path}/SSE-HoloNet/SSE_holonet_original_train.prototxt"


def test_command_line_reports_a_bad_configuration_without_traceback(tmp_path, capsys):
    code = main(["--backbone", "holonet", "--variant", "original", "--out", str(tmp_path),
                 "--input-size", "36"])
    assert code == 1
    err = capsys.readouterr().err
    assert "multiple of 8" in err and "Traceback" not in err
    code = main(["--backbone", "densenet", "--out", str(tmp_path), "--mean-value", "1,2"])
    assert code == 1
    assert "mean_value" in capsys.readouterr().err
