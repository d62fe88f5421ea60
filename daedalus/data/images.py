"""Image data given as a table: one row per image, one column per pixel value, and a label column.

Layout (the OpenML convention, used by ``mnist_784`` and ``CIFAR_10``): the pixel columns, in file order, hold
the channel planes one after another, each plane row-major; ``--image-shape HxWxC`` says how to fold them.
MNIST's 784 columns are one 28x28 plane; CIFAR-10's 3,072 are the red, green and blue 32x32 planes.
Values 0..255 are scaled to 0..1 (values already within 0..1 are kept), then each channel is standardised
with the mean and standard deviation of the training images, which networks without normalisation layers
need to train at all (digits coded 0..16 are otherwise nearly constant inputs).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from daedalus.data.infer import drop_missing_target, target_classes
from daedalus.data.values import canonical_str
from daedalus.errors import ConfigError, DataError

_SHAPE = re.compile(r"^\s*(\d+)\s*[xX×]\s*(\d+)\s*(?:[xX×]\s*(\d+))?\s*$")


def parse_image_shape(text: str) -> tuple[int, int, int]:
    """``"28x28x1"`` -> (height, width, channels); ``"28x28"`` means one channel."""
    match = _SHAPE.match(str(text))
    if not match:
        raise ConfigError(f"image shape {text!r} is not HEIGHTxWIDTHxCHANNELS; pass e.g. --image-shape 28x28x1")
    height, width, channels = int(match[1]), int(match[2]), int(match[3] or 1)
    if min(height, width, channels) < 1 or channels > 4:
        raise ConfigError(f"image shape {text!r} is out of range; sizes must be >= 1 and channels 1 to 4")
    return height, width, channels


@dataclass(frozen=True)
class ImageTable:
    """Images as a float32 array (N, C, H, W) in 0..1, and their labels as codes 0..k-1 of ``classes``."""

    images: np.ndarray
    labels: np.ndarray
    classes: tuple[object, ...]
    pixel_columns: tuple[str, ...]
    scale: float  # what the raw pixel values were divided by
    mean: tuple[float, ...]  # per channel, after scaling; subtracted
    std: tuple[float, ...]  # per channel, after scaling; divided by

    @property
    def shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of one image."""
        c, h, w = self.images.shape[1:]
        return int(c), int(h), int(w)


def pixels_to_images(frame: pd.DataFrame, pixel_columns: tuple[str, ...], shape: tuple[int, int, int],
                     scale: float, mean: tuple[float, ...] | None = None,
                     std: tuple[float, ...] | None = None) -> np.ndarray:
    """Fold the pixel columns of ``frame`` into (N, C, H, W) float32 images: divided by ``scale``, then, when
    given, each channel minus ``mean`` and divided by ``std``."""
    height, width, channels = shape
    missing = [c for c in pixel_columns if c not in frame.columns]
    if missing:
        raise DataError(f"{len(missing)} pixel column(s) missing, e.g. {missing[0]!r}; pass rows with the same "
                        f"pixel columns as the training data")
    try:
        values = frame.loc[:, list(pixel_columns)].to_numpy(dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise DataError("pixel columns must hold numbers only; remove text columns other than the target") from exc
    if not np.isfinite(values).all():
        raise DataError("pixel columns have missing or infinite values; every pixel of every image needs a value")
    images = (values / np.float32(scale)).reshape(len(frame), channels, height, width)
    if mean is not None and std is not None:
        images -= np.asarray(mean, dtype=np.float32).reshape(1, -1, 1, 1)
        images /= np.asarray(std, dtype=np.float32).reshape(1, -1, 1, 1)
    return images


def read_images(frame: pd.DataFrame, target: str, shape: tuple[int, int, int]) -> ImageTable:
    """Split ``frame`` into pixels and labels, check the pixel count against ``shape`` and fold the images."""
    frame, _ = drop_missing_target(frame, target)
    pixel_columns = tuple(str(c) for c in frame.columns if c != target)
    height, width, channels = shape
    expected = height * width * channels
    if len(pixel_columns) != expected:
        raise DataError(f"the image shape {height}x{width}x{channels} needs {expected} pixel columns but the file "
                        f"has {len(pixel_columns)} besides the target; fix --image-shape or drop the extra columns")
    raw_max = float(frame[list(pixel_columns)].max().max()) if len(frame) else 0.0
    scale = 255.0 if raw_max > 1.0 else 1.0
    scaled = pixels_to_images(frame, pixel_columns, shape, scale)
    mean = tuple(float(m) for m in scaled.mean(axis=(0, 2, 3)))
    std = tuple(float(s) if s > 0 else 1.0 for s in scaled.std(axis=(0, 2, 3)))
    images = pixels_to_images(frame, pixel_columns, shape, scale, mean, std)
    y = frame[target]
    classes = target_classes(y)
    if len(classes) < 2:
        raise DataError(f"target column '{target}' has a single label; image data needs at least two classes")
    lookup = {canonical_str(c): i for i, c in enumerate(classes)}
    labels = np.array([lookup[canonical_str(v)] for v in y.tolist()], dtype=np.int64)
    return ImageTable(images, labels, classes, pixel_columns, scale, mean, std)
