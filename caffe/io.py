"""pycaffe's `caffe.io`: loading and resizing images, the Transformer that turns images into net
input, and conversions between numpy arrays and Caffe's BlobProto and Datum messages.

Same names, arguments and behaviour as pycaffe, with OpenCV in place of scikit-image:
  * load_image reads with OpenCV (gray conversion uses OpenCV's weights, as Caffe's own loaders do);
  * resize_image uses cv2.resize (order 0: nearest, 1: bilinear, 3: bicubic), without
    scikit-image's anti-aliasing blur when shrinking;
  * arrays decoded from blobs and float datums are float32 (Caffe's blob type; pycaffe gave
    float64 of the same values);
  * bad input raises caffe.errors.DataError.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import cv2
import numpy as np

from caffe.errors import DataError
from caffe.model_io import array_to_blobproto, blobproto_to_array
from caffe.proto import caffe_pb2

__all__ = [
    "load_image", "resize_image", "oversample", "Transformer", "blobproto_to_array",
    "array_to_blobproto", "arraylist_to_blobprotovector_str", "blobprotovector_str_to_arraylist",
    "array_to_datum", "datum_to_array",
]

_INTERPOLATIONS = {0: cv2.INTER_NEAREST_EXACT, 1: cv2.INTER_LINEAR, 3: cv2.INTER_CUBIC}
_CV_MAX_CHANNELS = 512


# ------------------------------------------------------------------------------------------------
# Images
# ------------------------------------------------------------------------------------------------

def _to_unit_float(img: np.ndarray) -> np.ndarray:
    """Integer images scaled to [0, 1] by their type's maximum; float images kept; as float32."""
    if np.issubdtype(img.dtype, np.integer):
        return img.astype(np.float32) / np.float32(np.iinfo(img.dtype).max)
    return img.astype(np.float32)


def load_image(filename: str, color: bool = True) -> np.ndarray:
    """Load an image as float32 in [0, 1], H x W x 3 in RGB order (color) or H x W x 1 (gray).

    A gray file loaded with color=True is repeated over three channels; alpha is dropped.
    """
    flags = (cv2.IMREAD_COLOR if color else cv2.IMREAD_GRAYSCALE) | cv2.IMREAD_ANYDEPTH
    img = cv2.imread(str(filename), flags)
    if img is None:
        raise DataError(f"{filename}: cannot read image (missing file or unsupported format)")
    img = _to_unit_float(img)
    if img.ndim == 2:
        return img[:, :, np.newaxis]
    return np.ascontiguousarray(img[:, :, ::-1])


def resize_image(im: np.ndarray, new_dims: Sequence[int], interp_order: int = 1) -> np.ndarray:
    """Resize an H x W x K image to new_dims (height, width), any K; returns float32.

    interp_order: 0 nearest neighbour, 1 bilinear (default), 3 bicubic.
    """
    if interp_order not in _INTERPOLATIONS:
        raise DataError(f"interp_order must be one of {sorted(_INTERPOLATIONS)}, got {interp_order}")
    im = np.asarray(im, dtype=np.float32)
    if im.ndim != 3:
        raise DataError(f"resize_image expects an H x W x K array, got shape {im.shape}")
    height, width = (int(d) for d in new_dims[:2])
    if height <= 0 or width <= 0:
        raise DataError(f"resize_image: new_dims must be positive, got {tuple(new_dims)}")
    chunks = []
    for start in range(0, im.shape[2], _CV_MAX_CHANNELS):
        part = cv2.resize(im[:, :, start:start + _CV_MAX_CHANNELS], (width, height),
                          interpolation=_INTERPOLATIONS[interp_order])
        chunks.append(part.reshape(height, width, -1))
    if not chunks:
        return np.zeros((height, width, 0), np.float32)
    return np.concatenate(chunks, axis=2) if len(chunks) > 1 else chunks[0]


def oversample(images: Sequence[np.ndarray], crop_dims: Sequence[int]) -> np.ndarray:
    """Ten crops per image (four corners, centre, and their horizontal mirrors), as pycaffe.

    images: H x W x K arrays of one size. Returns (10 * N) x crop_h x crop_w x K float32, the
    five crops of an image followed by their mirrors.
    """
    if len(images) == 0:
        raise DataError("oversample needs at least one image")
    height, width, channels = np.asarray(images[0]).shape
    crop_h, crop_w = (int(d) for d in crop_dims[:2])
    if crop_h > height or crop_w > width:
        raise DataError(f"crop {crop_h}x{crop_w} is larger than the images ({height}x{width})")
    # The centre crop's corner is truncated, as pycaffe's float arithmetic then int cast does.
    corners = [(0, 0), (0, width - crop_w), (height - crop_h, 0), (height - crop_h, width - crop_w),
               (int(height / 2 - crop_h / 2), int(width / 2 - crop_w / 2))]
    crops = np.empty((10 * len(images), crop_h, crop_w, channels), dtype=np.float32)
    for n, image in enumerate(images):
        image = np.asarray(image)
        if image.shape != (height, width, channels):
            raise DataError(f"oversample: image {n} has shape {image.shape}, the first has "
                            f"{(height, width, channels)}")
        five = np.stack([image[y:y + crop_h, x:x + crop_w, :] for y, x in corners])
        crops[10 * n:10 * n + 5] = five
        crops[10 * n + 5:10 * n + 10] = five[:, :, ::-1, :]
    return crops


class Transformer:
    """Turns images (H x W x K, as load_image gives) into net input (K x H x W) and back.

    preprocess applies, in pycaffe's order: resize to the input's H x W, transpose, channel swap,
    raw_scale, subtract mean, input_scale. deprocess undoes them in reverse (except the resize).

    inputs: {input blob name: its shape (N, K, H, W)}, e.g. {"data": net.blobs["data"].data.shape}.
    """

    def __init__(self, inputs: Mapping[str, Sequence[int]]):
        self.inputs = {name: tuple(int(d) for d in shape) for name, shape in inputs.items()}
        self.transpose: dict[str, tuple[int, ...]] = {}
        self.channel_swap: dict[str, tuple[int, ...]] = {}
        self.raw_scale: dict[str, float] = {}
        self.mean: dict[str, np.ndarray] = {}
        self.input_scale: dict[str, float] = {}

    def _check_input(self, in_: str) -> None:
        if in_ not in self.inputs:
            raise DataError(f"{in_} is not one of the net inputs: {list(self.inputs)}")

    def preprocess(self, in_: str, data: np.ndarray) -> np.ndarray:
        """An H x W x K image -> the K x H x W float32 input of blob `in_` (a new array)."""
        self._check_input(in_)
        caffe_in = np.array(data, dtype=np.float32)
        in_dims = self.inputs[in_][2:]
        if caffe_in.shape[:2] != in_dims:
            caffe_in = resize_image(caffe_in, in_dims)
        if in_ in self.transpose:
            if caffe_in.ndim != len(self.transpose[in_]):
                raise DataError(f"preprocess('{in_}'): an image of shape {caffe_in.shape} has "
                                f"{caffe_in.ndim} axes; set_transpose expects {len(self.transpose[in_])}")
            caffe_in = caffe_in.transpose(self.transpose[in_])
            expected = tuple(self.inputs[in_][1:])
            if caffe_in.shape != expected:
                raise DataError(f"preprocess('{in_}'): the image gives {caffe_in.shape[0]} channels "
                                f"({caffe_in.shape} after the transpose), blob '{in_}' takes "
                                f"{expected[0]} ({expected}); load it with color="
                                f"{expected[0] == 3}")
        if in_ in self.channel_swap:
            caffe_in = caffe_in[list(self.channel_swap[in_]), :, :]
        caffe_in = np.ascontiguousarray(caffe_in)
        if in_ in self.raw_scale:
            caffe_in *= self.raw_scale[in_]
        if in_ in self.mean:
            caffe_in -= self.mean[in_]
        if in_ in self.input_scale:
            caffe_in *= self.input_scale[in_]
        return caffe_in

    def deprocess(self, in_: str, data: np.ndarray) -> np.ndarray:
        """Net input (K x H x W, or 1 x K x H x W) of blob `in_` -> the H x W x K image."""
        self._check_input(in_)
        decaf_in = np.array(data).squeeze()
        if in_ in self.input_scale:
            decaf_in /= self.input_scale[in_]
        if in_ in self.mean:
            decaf_in += self.mean[in_]
        if in_ in self.raw_scale:
            decaf_in /= self.raw_scale[in_]
        if in_ in self.channel_swap:
            decaf_in = decaf_in[np.argsort(self.channel_swap[in_]), :, :]
        if in_ in self.transpose:
            decaf_in = decaf_in.transpose(np.argsort(self.transpose[in_]))
        return decaf_in

    def set_transpose(self, in_: str, order: Sequence[int]) -> None:
        """Axis order applied to the image, e.g. (2, 0, 1) for H x W x K -> K x H x W."""
        self._check_input(in_)
        if len(order) != len(self.inputs[in_]) - 1:
            raise DataError("Transpose order needs to have the same number of dimensions as the input.")
        self.transpose[in_] = tuple(order)

    def set_channel_swap(self, in_: str, order: Sequence[int]) -> None:
        """Channel order after transposing, e.g. (2, 1, 0) for RGB -> BGR."""
        self._check_input(in_)
        if len(order) != self.inputs[in_][1]:
            raise DataError("Channel swap needs to have the same number of dimensions as the input channels.")
        self.channel_swap[in_] = tuple(order)

    def set_raw_scale(self, in_: str, scale: float) -> None:
        """Multiplier applied before the mean is subtracted, e.g. 255 for [0, 1] images."""
        self._check_input(in_)
        self.raw_scale[in_] = scale

    def set_mean(self, in_: str, mean: np.ndarray) -> None:
        """Mean subtracted from the input: one value per channel (K,) or a K x H x W image."""
        self._check_input(in_)
        mean = np.asarray(mean)
        shape = mean.shape
        if mean.ndim == 1:
            if shape[0] != self.inputs[in_][1]:
                raise DataError("Mean channels incompatible with input.")
            mean = mean[:, np.newaxis, np.newaxis]
        else:
            if len(shape) == 2:
                shape = (1,) + shape
            if len(shape) != 3:
                raise DataError("Mean shape invalid")
            if shape != self.inputs[in_][1:]:
                raise DataError("Mean shape incompatible with input shape.")
        self.mean[in_] = mean

    def set_input_scale(self, in_: str, scale: float) -> None:
        """Multiplier applied after the mean is subtracted."""
        self._check_input(in_)
        self.input_scale[in_] = scale


# ------------------------------------------------------------------------------------------------
# Blobs and datums
# ------------------------------------------------------------------------------------------------

def arraylist_to_blobprotovector_str(arraylist: Iterable[np.ndarray]) -> bytes:
    """Serialise arrays as a BlobProtoVector."""
    vec = caffe_pb2.BlobProtoVector()
    vec.blobs.extend(array_to_blobproto(arr) for arr in arraylist)
    return vec.SerializeToString()


def blobprotovector_str_to_arraylist(str: bytes) -> list[np.ndarray]:  # noqa: A002 (pycaffe's name)
    """Arrays of a serialised BlobProtoVector."""
    vec = caffe_pb2.BlobProtoVector()
    vec.ParseFromString(str)
    return [blobproto_to_array(blob) for blob in vec.blobs]


def array_to_datum(arr: np.ndarray, label: int | None = None) -> caffe_pb2.Datum:
    """A Datum of a C x H x W array: uint8 arrays go to `data` as bytes, others to `float_data`."""
    arr = np.asarray(arr)
    if arr.ndim != 3:
        raise DataError(f"Incorrect array shape: a Datum holds C x H x W, got {arr.shape}")
    datum = caffe_pb2.Datum()
    datum.channels, datum.height, datum.width = (int(d) for d in arr.shape)
    if arr.dtype == np.uint8:
        datum.data = arr.tobytes()
    else:
        datum.float_data.extend(arr.astype(np.float32).ravel().tolist())
    if label is not None:
        datum.label = int(label)
    return datum


def _decode_datum(datum: caffe_pb2.Datum) -> np.ndarray:
    """An encoded Datum (an image file's bytes) decoded as Caffe does (native channels, BGR), CHW."""
    img = cv2.imdecode(np.frombuffer(datum.data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise DataError("encoded Datum could not be decoded as an image")
    if img.ndim == 2:
        img = img[:, :, np.newaxis]
    return np.ascontiguousarray(img.transpose(2, 0, 1))


def datum_to_array(datum: caffe_pb2.Datum) -> np.ndarray:
    """The C x H x W array of a Datum: uint8 from `data` (decoded first if `encoded`), else float32
    from `float_data`."""
    if datum.encoded:
        return _decode_datum(datum)
    shape = (datum.channels, datum.height, datum.width)
    count = int(np.prod(shape, dtype=np.int64))
    if len(datum.data):
        if len(datum.data) != count:
            raise DataError(f"Datum of shape {shape} holds {len(datum.data)} bytes of data, expected {count}")
        return np.frombuffer(datum.data, dtype=np.uint8).reshape(shape).copy()
    values = np.array(datum.float_data, dtype=np.float32)
    if values.size != count:
        raise DataError(f"Datum of shape {shape} holds {values.size} float_data values, expected {count}")
    return values.reshape(shape)
