"""Where the tests find their data: the golden Caffe reference data lives in the repository
(tests/golden); the real images, clips and data sets live beside it in ``../shared/data``, or where
the environment variable ``SSE_SHARED_DIR`` points. Tests that need the real data skip, saying why,
when it is absent, so that a bare clone passes."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
GOLDEN = REPO / "tests" / "golden"
SUBMISSION = REPO / "submitted_predictions_emotiw2017"


def shared_dir() -> Path:
    """``$SSE_SHARED_DIR`` if set, else ``../shared`` beside the repository."""
    return Path(os.environ.get("SSE_SHARED_DIR") or REPO.parent / "shared")


DATA = shared_dir() / "data"


def shared_data(*parts: str) -> Path:
    """``DATA/parts...``; skips the calling test (with the path as reason) when it is absent."""
    path = DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not found at {path} (set SSE_SHARED_DIR to the folder holding data/)")
    return path


def needs_shared_data(*parts: str) -> pytest.MarkDecorator:
    """A skip mark for tests or modules that read ``DATA/parts...``, with the path as reason."""
    path = DATA.joinpath(*parts)
    return pytest.mark.skipif(not path.exists(), reason=f"real data not found at {path} "
                                                        "(set SSE_SHARED_DIR to the folder holding data/)")


@pytest.fixture
def golden() -> Path:
    return GOLDEN


def _torch_threads(n: int):
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def one_thread():
    """PyTorch on one thread for the test, the former count restored after it."""
    yield from _torch_threads(1)


@pytest.fixture
def two_threads():
    """PyTorch on two threads for the test, the former count restored after it."""
    yield from _torch_threads(2)


@pytest.fixture(params=["C kernels", "PyTorch path"])
def kernels(request, monkeypatch):
    """Each BatchNorm kernel test twice: with caffe/csrc's kernels (skipped where they cannot be
    built) and with the PyTorch path that stands in for them."""
    import caffe.functional
    from caffe import native
    if request.param == "C kernels":
        if native.library("batch_norm_channels_last") is None:
            pytest.skip(f"caffe/csrc kernels not built: {native.problem('batch_norm_channels_last')}")
    else:
        monkeypatch.setattr(caffe.functional, "_native_batch_norm_kernels", lambda x: None)
    return request.param
