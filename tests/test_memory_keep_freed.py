"""caffe.memory.keep_freed_memory: a large tensor freed in one iteration is reused, already
mapped, in the next (no page faults per iteration), unless CAFFE_KEEP_FREED_MEMORY=0."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO

PROBE = """
import json, resource, sys
import torch
import caffe
net = caffe.Net(sys.argv[1], caffe.TEST)
from caffe.memory import keep_freed_memory
faults = []
for _ in range(10):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    t = torch.empty(16 << 20)  # 64 MiB
    t.fill_(1.0)
    del t
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({"applied": keep_freed_memory(), "faults": faults}))
"""

NET = 'name: "n" layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 1 } } }\n'


def _probe(tmp_path, keep: str) -> dict:
    prototxt = tmp_path / "n.prototxt"
    prototxt.write_text(NET)
    env = dict(os.environ, CAFFE_KEEP_FREED_MEMORY=keep, PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-c", PROBE, str(prototxt)], env=env, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_building_a_net_makes_freed_memory_reusable_without_page_faults(tmp_path) -> None:
    kept = _probe(tmp_path, "1")
    assert kept["applied"] is True
    pages = (64 << 20) // os.sysconf("SC_PAGE_SIZE")
    # glibc settles its heap within the first few iterations (it may grow to hold two such
    # blocks); from then on nothing is faulted in.
    assert max(kept["faults"][-4:]) < pages // 20, kept


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_the_environment_variable_leaves_the_c_library_defaults(tmp_path) -> None:
    default = _probe(tmp_path, "0")
    assert default["applied"] is False
    pages = (64 << 20) // os.sysconf("SC_PAGE_SIZE")
    assert min(default["faults"][-4:]) > pages // 2, default
