"""Every console script calls itself by its own name in ``--help`` and in its errors (not
``python -m package.module``), so that a user can run what the usage line says; the errors of
``sse-extract-net`` name the paths the user gave, not the hidden temporary file beside them."""
from __future__ import annotations

import importlib
import tomllib
from pathlib import Path

import pytest

from sse.nets import extract_net

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
# the command of the original release that the tool replaces, kept as its program name
RELEASE_NAMES = {"leveldb2mat": "leveldb2mat.py"}


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_help_names_the_console_script(script, capsys):
    module, _, function = SCRIPTS[script].partition(":")
    main = getattr(importlib.import_module(module), function)
    try:
        main(["--help"])
    except SystemExit:
        pass
    out = capsys.readouterr()
    usage = (out.out + out.err).split("usage: ", 1)[1].split()[0]
    assert usage == RELEASE_NAMES.get(script, script)


def test_extract_net_names_the_missing_output_folder_it_was_given(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SSE_TRACEBACK", raising=False)
    test = ROOT / "script" / "SSE-HoloNet" / "SSE_holonet_test.prototxt"
    out = tmp_path / "missing" / "extract.prototxt"
    assert extract_net.main([str(test), str(out)]) == 1
    assert capsys.readouterr().err == f"sse-extract-net: error: {out}: No such file or directory\n"
    assert extract_net.main([str(test), str(tmp_path / "extract.prototxt")]) == 0
    assert not list(tmp_path.glob(".*"))
