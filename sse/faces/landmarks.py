"""dlib's 68-point shape predictor and where its model file is found.

Lookup order for `shape_predictor_68_face_landmarks.dat`: an explicit path (`--landmarks-model`),
the `models/` folder of the PyPI package `face_recognition_models` (located with
importlib.util.find_spec, not imported: its import needs pkg_resources, gone from new setuptools),
then Debian's `libdlib-data` at /usr/share/dlib/.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import dlib
import numpy as np

from .boxes import Box
from .errors import ModelNotFoundError

LANDMARKS_MODEL = "shape_predictor_68_face_landmarks.dat"
DEBIAN_MODEL_DIR = Path("/usr/share/dlib")
INSTALL_HINT = (
    "install it with `pip install face_recognition_models` (or `apt-get install libdlib-data` on"
    " Debian/Ubuntu)"
)


def package_model_dir() -> Path | None:
    """The models/ folder of face_recognition_models, if that package is installed."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / "models"


def find_model_file(name: str, override: Path | None = None, option: str = "") -> Path:
    """Path of a dlib model file; raises ModelNotFoundError saying where it looked, how to install it
    and which command-line `option` passes the file."""
    if override is not None:
        path = Path(override)
        if not path.is_file():
            raise ModelNotFoundError(f"model file not found: {path}")
        return path
    candidates = [d / name for d in (package_model_dir(), DEBIAN_MODEL_DIR) if d is not None]
    for path in candidates:
        if path.is_file():
            return path
    looked = ", ".join(str(p) for p in candidates) or "(no candidate folder)"
    passed = f", or pass the file with {option} PATH" if option else ""
    raise ModelNotFoundError(f"dlib model {name} not found (looked in {looked}); {INSTALL_HINT}{passed}")


class LandmarkPredictor:
    """68 facial landmarks (dlib/iBUG 300-W order) inside a face box."""

    def __init__(self, model_path: Path | None = None):
        self.model_path = find_model_file(LANDMARKS_MODEL, model_path, "--landmarks-model")
        self._predictor = dlib.shape_predictor(str(self.model_path))

    def __call__(self, image: np.ndarray, box: Box) -> np.ndarray:
        """Landmarks as a float32 (68, 2) array of (x, y) pixels; `image` gray or RGB uint8."""
        shape = self._predictor(image, box.to_dlib())
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)
