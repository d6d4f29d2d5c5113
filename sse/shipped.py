"""Trained emotion models as shipped in ``models/<name>/``, and ensembles of them.

A model folder holds ``deploy.prototxt`` (an Input layer ``data``, a ``prob`` output), the
weights ``model.caffemodel``, the mean as ``mean.binaryproto`` and ``model.json``:

    {"name": ..., "input_size": 48, "channels": 1, "mean_value": [129.47], "scale": 1.0,
     "classes": ["Angry", ...], "output": "prob", "tencrop_pad": 4,
     "crop": {"size": 48, "eye_distance": 0.35, "eye_height": 0.38, "anchors": "landmarks", "gray": true}}

``crop`` (``sse.faces.crop.CropSpec``) is how the model's faces are cut from a source image and its
68 landmarks, the same cut its training data was made with: ``probs_at(images, landmarks)`` and
``sse-predict`` cut each model's own crop from the source (``FaceCrops``). A ``model.json`` without
``crop`` takes the face pipeline's 128x128 crop resized to its input (the older behaviour).

``classes`` is the order of the net's outputs; probabilities are returned in the toolkit's order
(``sse.classes``). A net trained with a mean image (``mean_file``, e.g. the demo's) is scored
with ``Preprocessing.mean_image`` (C x H x W at the input size) subtracted. Faces go in as uint8
crops (N x H x W gray, or N x H x W x 3 BGR, pixels 0..255) and are resized to the input size when
they differ; any other dtype (floats in 0..1, 16-bit images, NaN) is refused with a ModelError that
says how to convert it, so nothing but 0..255 pixels reaches a net.

A model is checked when it is loaded, before any face is scored: the net's input must be the
``channels`` x ``input_size`` x ``input_size`` of ``model.json``, its output must have one value per
class of ``classes`` (a permutation of the toolkit's seven), the mean finite and of the right size,
``batch`` at least 1.

Test-time augmentation (``tta``): ``none``; ``mirror`` (the face and its mirror image);
``tencrop`` (the face padded by ``tencrop_pad`` pixels with reflected edges, as the training
crops were cut, then its four corner crops and centre crop, each also mirrored). The
probabilities of the views are averaged.

An ensemble file (JSON) names member folders and weights:

    {"members": [{"model": "fer2013_holonet48_3conv-s_concat", "weight": 0.4}, ...],
     "fusion": "weighted mean of probabilities", ...}

Member folders are resolved next to the file; weights must be finite, non-negative and not all
zero (a ModelError naming the file otherwise). ``load(path)`` takes either.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

import caffe
from caffe.inference import optimize

from .classes import CLASS_NAMES, label_mapping, reorder_columns
from .faces.crop import AFEW_128, CropSpec, cut_crop
from .fusion import fuse_models

TTA_MODES = ("none", "mirror", "tencrop")
MODEL_FILES = ("deploy.prototxt", "model.caffemodel", "model.json")


class ModelError(ValueError):
    """A model folder or ensemble file that is missing or malformed (names the file)."""


@dataclass(frozen=True)
class Preprocessing:
    """How faces become the net's input: size, channels, mean, scale, the ten-crop padding."""

    input_size: int
    channels: int = 1
    mean_value: tuple[float, ...] = ()
    scale: float = 1.0
    classes: tuple[str, ...] = CLASS_NAMES
    output: str = "prob"
    tencrop_pad: int = 4
    mean_image: np.ndarray | None = field(default=None, compare=False)  # C x H x W at the input size
    crop: CropSpec | None = None  # None: the face pipeline's crop, resized to the input size

    def __post_init__(self) -> None:
        if self.crop is not None and (self.crop.size != self.input_size or self.crop.gray != (self.channels == 1)):
            raise ModelError(f"the crop ({self.crop.size}x{self.crop.size}, {'gray' if self.crop.gray else 'colour'}) "
                             f"is not the net's input ({self.input_size}x{self.input_size}, {self.channels} channel(s))")

    @classmethod
    def from_json(cls, path: Path) -> "Preprocessing":
        try:
            meta = json.loads(path.read_text())
            crop = CropSpec.from_json(meta["crop"]) if "crop" in meta else None
            return cls(input_size=int(meta["input_size"]), channels=int(meta.get("channels", 1)),
                       mean_value=tuple(float(v) for v in meta.get("mean_value", ())),
                       scale=float(meta.get("scale", 1.0)),
                       classes=tuple(meta.get("classes", CLASS_NAMES)), output=meta.get("output", "prob"),
                       tencrop_pad=int(meta.get("tencrop_pad", 4)), crop=crop)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ModelError(f"{path}: not a model description with input_size, channels, mean_value "
                             f"and an optional crop ({exc})") from exc



def batch_sizes(n: int, batch: int) -> list[int]:
    """The batches ``n`` faces are scored in: full batches of ``batch``, then the rest as powers of
    two, largest first (100 of 128: 64, 32, 4). A model then sees at most a few input shapes
    however many chunks of however many faces a long video streams through it: the engine and
    oneDNN keep state per input shape (packed weights, compiled primitives), which a new
    remainder size in every chunk would grow without end."""
    sizes = [batch] * (n // batch)
    rest = n % batch
    while rest:
        size = 1 << (rest.bit_length() - 1)
        sizes.append(size)
        rest -= size
    return sizes

class FaceCrops:
    """The same N faces, cut for each model as it asks (``crops(spec)``): from source images and
    their landmarks by ``cut_crop``, or, for models without a crop (``spec`` None), the given
    ``default`` crops (the face pipeline's), which the model resizes."""

    def __init__(self, by_spec: dict[CropSpec | None, np.ndarray]) -> None:
        self.by_spec = dict(by_spec)
        self.scored: dict[tuple[int, str], np.ndarray] = {}  # (id of a model, tta) -> its probabilities

    @classmethod
    def from_images(cls, images: Sequence[np.ndarray], landmarks: Sequence[np.ndarray],
                    specs: Sequence[CropSpec | None], default: np.ndarray | None = None) -> "FaceCrops":
        """Face i cut from ``images[i]`` (BGR or gray uint8) at ``landmarks[i]`` (68 x 2) for each
        spec; ``default`` stands for None (without it, None is the release's 128x128 crop)."""
        if len(images) != len(landmarks):
            raise ModelError(f"{len(images)} images but {len(landmarks)} landmark sets")
        for i, image in enumerate(images):
            check_pixels(image, f"image {i}")
        by_spec: dict[CropSpec | None, np.ndarray] = {}
        for spec in dict.fromkeys(specs):
            if spec is None and default is not None:
                by_spec[None] = np.asarray(default)
                continue
            cut = spec or AFEW_128
            by_spec[spec] = _stack([cut_crop(image, points, cut) for image, points in zip(images, landmarks)],
                                   cut.size)
        return cls(by_spec)

    def crops(self, spec: CropSpec | None) -> np.ndarray:
        if spec not in self.by_spec:
            raise ModelError(f"no faces were cut with the crop {spec.to_json() if spec else 'of the face pipeline'}")
        return self.by_spec[spec]


def _stack(crops: list[np.ndarray], size: int) -> np.ndarray:
    return np.stack(crops) if crops else np.zeros((0, size, size), np.uint8)


def check_pixels(faces: np.ndarray, what: str = "faces") -> None:
    """Refuse anything but uint8 pixels (0..255): floats (0..1 or 0..255, NaN), 16-bit images and
    other integers would be scored as if they were 0..255 pixels; the error says how to convert."""
    dtype = np.asarray(faces).dtype
    if dtype == np.uint8:
        return
    if np.issubdtype(dtype, np.floating):
        hint = ("floats in 0..1: (x * 255).round().astype(np.uint8); floats in 0..255: "
                "x.round().astype(np.uint8); NaN pixels have no valid value")
    elif dtype in (np.uint16, np.int16):
        hint = "a 16-bit image: (x >> 8).astype(np.uint8), or cv2.imread without IMREAD_UNCHANGED"
    elif np.issubdtype(dtype, np.integer):
        hint = "integers in 0..255: x.astype(np.uint8)"
    else:
        hint = "8-bit pixel values"
    raise ModelError(f"{what} must be uint8 pixels (0..255), got dtype {dtype}; convert {hint}")


def check_weights(weights: Sequence[float], where: str) -> list[float]:
    """An ensemble's weights as floats: finite, non-negative, not all zero (ModelError naming ``where``)."""
    try:
        values = [float(w) for w in weights]
    except (TypeError, ValueError) as exc:
        raise ModelError(f"{where}: weights must be numbers ({exc})") from None
    if not values:
        raise ModelError(f"{where}: no members")
    bad = [w for w in values if not np.isfinite(w) or w < 0]
    if bad:
        raise ModelError(f"{where}: weights must be finite and non-negative, got {bad[0]:g} in {values}")
    if not sum(values) > 0:
        raise ModelError(f"{where}: the weights are all zero {values}: at least one member must weigh more than 0")
    return values


def _check_preprocessing(prep: Preprocessing) -> None:
    """Values of a model description that would score wrongly or fail late: class names that are
    not the seven classes, a mean or scale that is not a finite number of the right size."""
    if isinstance(prep.classes, str) or not all(isinstance(c, str) for c in prep.classes):
        raise ModelError(f"classes must be a list of class names, got {prep.classes!r}")
    try:
        label_mapping(list(prep.classes))
    except ValueError as exc:
        raise ModelError(f"classes: {exc}") from None
    if prep.channels not in (1, 3):
        raise ModelError(f"channels must be 1 or 3, got {prep.channels}")
    if prep.input_size < 1 or prep.tencrop_pad < 0 or prep.tencrop_pad >= prep.input_size:
        raise ModelError(f"input_size must be positive and tencrop_pad in 0..input_size-1, got "
                         f"input_size {prep.input_size}, tencrop_pad {prep.tencrop_pad}")
    if len(prep.mean_value) not in (0, 1, prep.channels) or not np.all(np.isfinite(prep.mean_value)):
        raise ModelError(f"mean_value must be 1 or {prep.channels} finite numbers, got {list(prep.mean_value)}")
    if not np.isfinite(prep.scale) or prep.scale == 0:
        raise ModelError(f"scale must be a finite non-zero number, got {prep.scale}")
    if prep.mean_image is not None:
        wanted = (prep.channels, prep.input_size, prep.input_size)
        if tuple(prep.mean_image.shape) != wanted:
            raise ModelError(f"the mean image is {' x '.join(map(str, prep.mean_image.shape))}, the input "
                             f"{' x '.join(map(str, wanted))}")
        if not np.all(np.isfinite(prep.mean_image)):
            raise ModelError("the mean image holds NaN or infinite values")


class EmotionModel:
    """A deploy net with its weights and preprocessing; ``probs`` scores face crops."""

    def __init__(self, deploy: str | Path, weights: str | Path, prep: Preprocessing,
                 name: str = "", batch: int = 128) -> None:
        self.name = name or Path(weights).stem
        self.prep = prep
        if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
            raise ModelError(f"{self.name}: batch must be a positive integer, got {batch!r}")
        self.batch = int(batch)
        _check_preprocessing(prep)
        self.net = caffe.Net(str(deploy), caffe.TEST, weights=str(weights))
        self._check_net(Path(deploy))
        self._fast = optimize(self.net)

    def _check_net(self, deploy: Path) -> None:
        """The net takes the preprocessing's input and gives one output per class (at load, not
        after a video has been read)."""
        prep = self.prep
        if "data" not in self.net.blobs:
            raise ModelError(f"{deploy}: no input blob 'data'")
        shape = tuple(self.net.blobs["data"].data.shape)
        wanted = (prep.channels, prep.input_size, prep.input_size)
        if len(shape) != 4 or shape[1:] != wanted:
            raise ModelError(f"the net {deploy} takes {' x '.join(map(str, shape[1:]))} but the preprocessing "
                             f"gives {' x '.join(map(str, wanted))} (channels x input_size x input_size)")
        if prep.output not in self.net.blobs:
            raise ModelError(f"{deploy}: no output blob '{prep.output}'")
        out = self.net.blobs[prep.output].data
        per_item = int(np.prod(out.shape[1:])) if out.ndim > 1 else 1
        if per_item != len(prep.classes):
            raise ModelError(f"{deploy}: output '{prep.output}' has {per_item} values per face but "
                             f"{len(prep.classes)} classes are named ({', '.join(prep.classes)})")

    @classmethod
    def from_dir(cls, folder: str | Path, batch: int = 128) -> "EmotionModel":
        """The model shipped in ``folder`` (see the module docstring for its files)."""
        folder = Path(folder)
        for name in MODEL_FILES:
            if not (folder / name).is_file():
                raise ModelError(f"{folder}: model folder without {name}")
        prep = Preprocessing.from_json(folder / "model.json")
        try:
            return cls(folder / "deploy.prototxt", folder / "model.caffemodel", prep, name=folder.name, batch=batch)
        except ModelError as exc:
            raise ModelError(f"{folder / 'model.json'}: {exc}") from None

    def _to_input(self, faces: np.ndarray) -> np.ndarray:
        """uint8 faces (N x H x W or N x H x W x 3) -> float32 N x C x H x W, mean and scale applied."""
        faces = np.asarray(faces)
        if faces.ndim == 3:
            faces = faces[..., None]
        if faces.shape[-1] != self.prep.channels:
            code = cv2.COLOR_BGR2GRAY if self.prep.channels == 1 else cv2.COLOR_GRAY2BGR
            faces = np.stack([cv2.cvtColor(np.ascontiguousarray(f), code) for f in faces])
            faces = faces.reshape(*faces.shape[:3], self.prep.channels)
        x = faces.astype(np.float32).transpose(0, 3, 1, 2)
        if self.prep.mean_image is not None:
            x -= self.prep.mean_image
        if self.prep.mean_value:
            mean = np.asarray(self.prep.mean_value, np.float32)
            x -= mean.reshape(1, -1, 1, 1) if mean.size == x.shape[1] else mean[0]
        if self.prep.scale != 1.0:
            x *= np.float32(self.prep.scale)
        return x

    def _resize(self, faces: np.ndarray, size: int) -> np.ndarray:
        if faces.shape[1:3] == (size, size):
            return faces
        return np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in faces]) \
            .reshape(len(faces), size, size, *faces.shape[3:])

    def _forward(self, x: np.ndarray) -> np.ndarray:
        out, i = [], 0
        for size in batch_sizes(len(x), self.batch):
            chunk = np.ascontiguousarray(x[i:i + size])
            out.append(self._fast.forward(data=chunk)[self.prep.output].reshape(size, -1))
            i += size
        return np.concatenate(out)

    def views(self, faces: np.ndarray, tta: str) -> list[np.ndarray]:
        """The augmented copies of ``faces`` (uint8, at the input size) that ``tta`` averages."""
        if tta not in TTA_MODES:
            raise ModelError(f"unknown test-time augmentation '{tta}' (one of {', '.join(TTA_MODES)})")
        faces = np.asarray(faces)
        if faces.ndim not in (3, 4) or (faces.ndim == 4 and faces.shape[-1] not in (1, 3)):
            raise ModelError(f"{self.name}: faces must be N x H x W (gray) or N x H x W x 3 (BGR), "
                             f"got shape {faces.shape}")
        check_pixels(faces, f"{self.name}: faces")
        size = self.prep.input_size
        faces = self._resize(faces, size)
        if tta == "none":
            return [faces]
        if tta == "mirror":
            return [faces, faces[:, :, ::-1]]
        p = self.prep.tencrop_pad
        padded = np.stack([cv2.copyMakeBorder(f, p, p, p, p, cv2.BORDER_REFLECT_101) for f in faces]) \
            .reshape(len(faces), size + 2 * p, size + 2 * p, *faces.shape[3:])
        crops = [padded[:, y:y + size, x:x + size] for y, x in
                 ((p, p), (0, 0), (0, 2 * p), (2 * p, 0), (2 * p, 2 * p))]
        return crops + [c[:, :, ::-1] for c in crops]

    def probs(self, faces: np.ndarray, tta: str = "none") -> np.ndarray:
        """N x 7 class probabilities of uint8 face crops, in the toolkit's class order."""
        if len(faces) == 0:
            return np.zeros((0, len(CLASS_NAMES)), np.float32)
        views = self.views(faces, tta)
        total = sum(self._forward(self._to_input(v)) for v in views) / len(views)
        return reorder_columns(total, self.prep.classes).astype(np.float32)

    def crop_specs(self) -> list[CropSpec | None]:
        """The crops this model's faces are cut with (None: the face pipeline's, resized)."""
        return [self.prep.crop]

    def score(self, faces: FaceCrops, tta: str = "none") -> np.ndarray:
        """``probs`` of the model's own crop of each face (computed once per model and faces: a
        model that is also an ensemble member is not run twice)."""
        key = (id(self), tta)
        if key not in faces.scored:
            faces.scored[key] = self.probs(faces.crops(self.prep.crop), tta)
        return faces.scored[key]

    def probs_at(self, images: Sequence[np.ndarray], landmarks: Sequence[np.ndarray], tta: str = "none") -> np.ndarray:
        """N x 7 probabilities of face i of ``images[i]`` (uint8, BGR or gray), cut at its 68
        ``landmarks[i]`` with the model's crop."""
        return self.score(FaceCrops.from_images(images, landmarks, self.crop_specs()), tta)


class Ensemble:
    """Shipped models fused by a weighted mean of their probabilities (``sse.fusion.fuse_models``)."""

    def __init__(self, members: Sequence[EmotionModel], weights: Sequence[float], name: str = "ensemble") -> None:
        if len(members) != len(weights) or not members:
            raise ModelError(f"{name}: {len(members)} members but {len(weights)} weights")
        self.members, self.weights, self.name = list(members), check_weights(weights, name), name

    @classmethod
    def from_file(cls, path: str | Path, batch: int = 128, loaded: dict[Path, EmotionModel] | None = None
                  ) -> "Ensemble":
        """The ensemble of a file; ``loaded`` shares member models already loaded (by folder)."""
        path = Path(path)
        try:
            spec = json.loads(path.read_text())
            entries = [(m["model"], float(m["weight"])) for m in spec["members"]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ModelError(f"{path}: not an ensemble file with members [{{model, weight}}] ({exc})") from exc
        check_weights([w for _, w in entries], str(path))
        loaded = {} if loaded is None else loaded
        members = []
        for model, _ in entries:
            folder = (path.parent / model).resolve()
            if folder not in loaded:
                loaded[folder] = EmotionModel.from_dir(folder, batch)
            members.append(loaded[folder])
        return cls(members, [w for _, w in entries], name=path.stem)

    def member_probs(self, faces: np.ndarray, tta: str = "none") -> list[np.ndarray]:
        return [m.probs(faces, tta) for m in self.members]

    def crop_specs(self) -> list[CropSpec | None]:
        return list(dict.fromkeys(m.prep.crop for m in self.members))

    def score(self, faces: FaceCrops, tta: str = "none") -> np.ndarray:
        """The fused probabilities of each member scoring its own crop of the faces."""
        return self.combine([m.score(faces, tta) for m in self.members])

    def probs_at(self, images: Sequence[np.ndarray], landmarks: Sequence[np.ndarray], tta: str = "none") -> np.ndarray:
        return self.score(FaceCrops.from_images(images, landmarks, self.crop_specs()), tta)

    def combine(self, member_probs: Sequence[np.ndarray]) -> np.ndarray:
        """The fused probabilities of the members' outputs (one array per member, same rows)."""
        return fuse(member_probs, self.weights, [m.name for m in self.members])

    def probs(self, faces: np.ndarray, tta: str = "none") -> np.ndarray:
        return self.combine(self.member_probs(faces, tta))


def fuse(member_probs: Sequence[np.ndarray], weights: Sequence[float],
         names: Sequence[str] | None = None) -> np.ndarray:
    """An ensemble's rule: the weighted mean of its members' probabilities."""
    return fuse_models(member_probs, weights, names=names).astype(np.float32)


def load(path: str | Path, batch: int = 128, loaded: dict[Path, EmotionModel] | None = None
         ) -> EmotionModel | Ensemble:
    """A model folder or an ensemble ``.json`` file; ``loaded`` (folder -> model) shares the models
    of several calls, so a folder that is also an ensemble's member is one model, run once per faces."""
    path = Path(path)
    loaded = {} if loaded is None else loaded
    if path.is_dir():
        if path.resolve() not in loaded:
            loaded[path.resolve()] = EmotionModel.from_dir(path, batch)
        return loaded[path.resolve()]
    if path.suffix == ".json" and path.is_file():
        return Ensemble.from_file(path, batch, loaded)
    raise ModelError(f"{path}: neither a model folder nor an ensemble .json file")
