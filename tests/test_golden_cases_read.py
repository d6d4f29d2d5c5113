"""Every golden case is read by a test. A test file names the cases it reads in a module-level
``GOLDEN_CASES`` tuple of string literals; a case is a folder of tests/golden, or, where a folder's
subfolders are nets of their own (``layers_all``, ``inplace_reshape``), one such subfolder
(``"layers_all/forward_only"``). A case added to tests/golden that no file declares fails here, as
does a declared case that is not on disk or that its file never names in its code. Tests that only
walk every file by suffix (test_proto_schema, test_model_io_golden's caffemodel sweep) check
formats, not semantics, and declare nothing for that."""
from __future__ import annotations

import ast
from pathlib import Path

from conftest import GOLDEN

TESTS = Path(__file__).resolve().parent


def golden_cases(root: Path) -> set[str]:
    """The cases on disk under ``root``: each folder, split into its subfolders that hold a
    ``net.prototxt`` when it has any."""
    cases: set[str] = set()
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        nets = [sub for sub in folder.iterdir() if (sub / "net.prototxt").is_file()]
        cases.update(f"{folder.name}/{net.name}" for net in nets)
        if not nets:
            cases.add(folder.name)
    return cases


def declarations(path: Path) -> tuple[tuple[str, ...], set[str]]:
    """A test file's ``GOLDEN_CASES`` (empty if it has none) and the string constants of the rest
    of its code."""
    tree = ast.parse(path.read_text(), filename=str(path))
    declared: tuple[str, ...] = ()
    strings: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == [
                "GOLDEN_CASES"]:
            declared = tuple(ast.literal_eval(node.value))
            continue
        strings.update(n.value for n in ast.walk(node)
                       if isinstance(n, ast.Constant) and isinstance(n.value, str))
    return declared, strings


def declared_cases() -> dict[str, tuple[tuple[str, ...], set[str]]]:
    """``GOLDEN_CASES`` and code strings of every test file that declares cases, by file name."""
    found = {path.name: declarations(path) for path in sorted(TESTS.glob("test_*.py"))}
    return {name: found[name] for name in found if found[name][0]}


def test_every_golden_case_is_declared_by_a_test() -> None:
    declared = {case for cases, _ in declared_cases().values() for case in cases}
    on_disk = golden_cases(GOLDEN)
    assert on_disk, f"no golden cases under {GOLDEN}"
    assert sorted(on_disk - declared) == [], "golden cases no test file declares in GOLDEN_CASES"
    assert sorted(declared - on_disk) == [], "declared golden cases that are not on disk"


def test_each_file_names_the_cases_it_declares_in_its_code() -> None:
    """A declaration cannot outlive the code that reads the case: each part of a declared case's
    path is a string constant in the rest of the declaring file."""
    unnamed = [f"{name}: {case}" for name, (cases, strings) in declared_cases().items()
               for case in cases if not set(case.split("/")) <= strings]
    assert unnamed == []


def test_a_new_folder_or_net_is_a_new_case(tmp_path: Path) -> None:
    (tmp_path / "plain" / "sub").mkdir(parents=True)
    for net in ("net_a", "net_b"):
        (tmp_path / "nets" / net).mkdir(parents=True)
        (tmp_path / "nets" / net / "net.prototxt").write_text("")
    (tmp_path / "README.md").write_text("")
    assert golden_cases(tmp_path) == {"plain", "nets/net_a", "nets/net_b"}
