"""Which emotion models sse-predict runs, and how each given form becomes a scorer.

A scorer is what ``sse.shipped`` loads (an ``EmotionModel`` or an ``Ensemble``, both with
``probs(faces, tta)`` and a ``name``). The forms of ``--model``:

* one path: a model folder (``deploy.prototxt``, ``model.caffemodel``, ``model.json``) or an
  ensemble ``.json`` file (``{"members": [{"model": <folder beside the file>, "weight": w}, ...]}``);
* three paths ``DEPLOY CAFFEMODEL MEAN``: any deploy prototxt (an Input layer ``data`` of shape
  N x C x H x W, a ``prob`` output in the toolkit's class order), its weights and the
  ``mean.binaryproto`` it was trained with (e.g. the demo's ``demo_out``); ``-`` for no mean.

Without ``--model`` every model folder under ``models/`` and every ensemble ``.json`` file there is
run (``default_models``); the first ensemble, else the first model, is the primary one whose
predictions the summaries, timelines, sheets and annotated videos show.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence, Union

import numpy as np

from caffe.data.transformer import load_mean_file
from caffe.errors import CaffeError
from caffe.model_io import read_net
from sse.shipped import MODEL_FILES, Ensemble, EmotionModel, ModelError, Preprocessing, load

Scorer = Union[EmotionModel, Ensemble]
MODELS_DIR = Path(__file__).resolve().parents[2] / "models"


def default_models(models_dir: Path = MODELS_DIR) -> list[Path]:
    """Ensemble files first, then model folders, each sorted by name; [] when none is shipped."""
    if not models_dir.is_dir():
        return []
    ensembles = sorted(p for p in models_dir.glob("*.json") if p.is_file())
    folders = sorted(p for p in models_dir.iterdir() if p.is_dir() and all((p / f).is_file() for f in MODEL_FILES))
    return ensembles + folders


def input_shape(deploy: Path) -> tuple[int, int, int]:
    """(channels, height, width) of the deploy net's Input layer ``data``."""
    try:
        net = read_net(deploy)
    except CaffeError as exc:
        raise ModelError(str(exc)) from None
    for layer in net.layer:
        shapes = layer.input_param.shape
        if layer.type == "Input" and "data" in layer.top and shapes:
            dims = list(shapes[list(layer.top).index("data") if len(shapes) > 1 else 0].dim)
            if len(dims) == 4:
                return int(dims[1]), int(dims[2]), int(dims[3])
    raise ModelError(f"{deploy}: no Input layer 'data' of shape N x C x H x W (a deploy prototxt is needed)")


def model_from_files(deploy: str | Path, weights: str | Path, mean: str | Path | None,
                     batch: int = 128) -> EmotionModel:
    """A scorer from a deploy prototxt, its caffemodel and its mean image (None: no mean)."""
    deploy, weights = Path(deploy), Path(weights)
    for path in (deploy, weights) + ((Path(mean),) if mean else ()):
        if not path.is_file():
            raise ModelError(f"{path}: no such file")
    channels, height, width = input_shape(deploy)
    if height != width:
        raise ModelError(f"{deploy}: input {height}x{width} is not square")
    mean_image = None
    if mean:
        try:
            mean_image = load_mean_file(mean)
        except CaffeError as exc:
            raise ModelError(str(exc)) from None
        mean_image = centre_crop(mean_image, height, Path(mean))
        if mean_image.shape[0] != channels:
            raise ModelError(f"{mean}: {mean_image.shape[0]} channels, {deploy} takes {channels}")
    prep = Preprocessing(input_size=height, channels=channels, mean_image=mean_image)
    try:
        return EmotionModel(deploy, weights, prep, name=weights.stem, batch=batch)
    except CaffeError as exc:
        raise ModelError(str(exc)) from None


def centre_crop(mean: np.ndarray, size: int, path: Path) -> np.ndarray:
    """The mean image at the net input: itself, or its centre (Caffe's TEST crop of a larger mean)."""
    h, w = mean.shape[1:]
    if h < size or w < size:
        raise ModelError(f"{path}: mean image {h}x{w} is smaller than the net input {size}x{size}")
    top, left = (h - size) // 2, (w - size) // 2
    return np.ascontiguousarray(mean[:, top:top + size, left:left + size])


def load_scorers(specs: Sequence[Sequence[str]] | None, batch: int = 128,
                 models_dir: Path = MODELS_DIR) -> list[Scorer]:
    """The scorers of the ``--model`` specs (one or three paths each), or the shipped default ones."""
    if not specs:
        found = default_models(models_dir)
        if not found:
            raise ModelError(f"no model given and none shipped in {models_dir}: pass --model FOLDER | "
                             f"ENSEMBLE.json | DEPLOY CAFFEMODEL MEAN")
        specs = [[str(p)] for p in found]
    scorers: list[Scorer] = []
    loaded: dict[Path, EmotionModel] = {}
    for spec in specs:
        if len(spec) == 1:
            try:
                scorer = load(spec[0], batch, loaded)
                scorers.append(load(spec[0], batch) if any(scorer is s for s in scorers) else scorer)
            except CaffeError as exc:
                raise ModelError(str(exc)) from None
        elif len(spec) == 3:
            scorers.append(model_from_files(spec[0], spec[1], None if spec[2] == "-" else spec[2], batch))
        else:
            raise ModelError(f"--model takes FOLDER, ENSEMBLE.json or DEPLOY CAFFEMODEL MEAN, got {len(spec)} "
                             f"paths: {' '.join(spec)}")
    names = [s.name for s in scorers]
    for i, name in enumerate(names):
        if name in names[:i]:
            scorers[i].name = f"{name}_{i + 1}"
    return scorers


def primary(scorers: Sequence[Scorer]) -> Scorer:
    """The scorer the summaries show: the first ensemble, else the first model."""
    return next((s for s in scorers if isinstance(s, Ensemble)), scorers[0])
