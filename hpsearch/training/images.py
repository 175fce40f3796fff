"""A user's folder of images as training data: one subfolder per class (torchvision's
``ImageFolder`` layout), PNG or JPEG, made grey or kept RGB, resized to one size, flattened.

Every image is checked before anything trains: one that cannot be read is named.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hpsearch.errors import DataError
from hpsearch.spec.choices import IMAGE_SUFFIXES
from hpsearch.training.tables import check_memory

PIXEL_MAX = 255.0  # an 8-bit image's largest value
MODES = {"grey": "L", "rgb": "RGB"}
COLOUR_SAMPLE = 50  # images looked at to tell a folder of colour images from a grey one
COLOUR_SPREAD = 4.0  # mean spread of a pixel's channels (of 255) above which it has colour


@dataclass(frozen=True)
class Images:
    """Images read from a folder: pixels ``(N, channels * height * width)`` (uint8), each
    one's class index, the class names (subfolders, sorted) and the files."""

    pixels: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]
    files: tuple[Path, ...]


def class_folders(folder: Path) -> tuple[tuple[str, ...], list[tuple[Path, int]]]:
    """The class subfolders of ``folder`` (sorted; hidden ones such as
    ``.ipynb_checkpoints`` are not classes) and every image file in them, at any depth, with
    its class index; unchecked (see :func:`image_files`)."""
    classes = tuple(
        sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    )
    files = [
        (file, i)
        for i, name in enumerate(classes)
        for file in sorted((folder / name).rglob("*"))
        if file.is_file() and file.suffix.lower() in IMAGE_SUFFIXES
    ]
    return classes, files


def image_files(folder: Path) -> tuple[tuple[str, ...], list[tuple[Path, int]]]:
    """The classes (subfolders, sorted) and every image file with its class index.

    Hidden subfolders (``.ipynb_checkpoints``, ``.git``) are not classes.

    Raises:
        DataError: The folder has no subfolders of images, only one class, or a class
            subfolder without images (a class no example teaches, always wrong).
    """
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder of images")
    classes, files = class_folders(folder)
    if not files:
        raise DataError(
            f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}) in subfolders; expected one "
            "subfolder per class, as torchvision's ImageFolder"
        )
    found = sorted({classes[i] for _, i in files})
    if len(found) < 2:
        raise DataError(f"{folder}: images of one class only ({found[0]}): nothing to tell apart")
    empty = [c for c in classes if c not in found]
    if empty:
        raise DataError(
            f"{folder / empty[0]}: a class folder without images ({', '.join(IMAGE_SUFFIXES)}): "
            "put its images there or remove it"
        )
    return classes, files


def common_size(files: Sequence[Path]) -> tuple[int, int]:
    """The most common (height, width) among ``files`` (read from their headers).

    Raises:
        DataError: A file is not a readable image.
    """
    from PIL import Image

    sizes: Counter[tuple[int, int]] = Counter()
    for file in files:
        try:
            with Image.open(file) as image:
                width, height = image.size
        except Exception as e:
            raise DataError(f"{file}: not a readable image ({type(e).__name__}: {e})") from e
        sizes[(height, width)] += 1
    return sizes.most_common(1)[0][0]


def in_colour(folder: Path) -> bool:
    """Whether the images of ``folder`` hold colour: whether any of an even sample of them
    (:data:`COLOUR_SAMPLE`) has channels that differ by :data:`COLOUR_SPREAD` on average (a
    grey image saved as RGB, or a JPEG's rounding, differs by less).

    Raises:
        DataError: As :func:`image_files`, or a sampled file is not a readable image.
    """
    from PIL import Image

    _, files = image_files(folder)
    for file, _ in files[:: max(1, len(files) // COLOUR_SAMPLE)]:
        try:
            with Image.open(file) as image:
                if image.mode in ("1", "L", "LA", "I", "I;16", "F"):
                    continue
                rgb = np.asarray(image.convert("RGB"), dtype=np.int16)
        except Exception as e:
            raise DataError(f"{file}: not a readable image ({type(e).__name__}: {e})") from e
        if float((rgb.max(axis=2) - rgb.min(axis=2)).mean()) > COLOUR_SPREAD:
            return True
    return False


def read_images(
    folder: Path, size: tuple[int, int] | None, color: str, classes: Sequence[str] | None = None
) -> tuple[Images, tuple[int, int]]:
    """Reads every image of ``folder``, resized to ``size`` (default: the most common).

    Args:
        folder: The folder, one subfolder per class.
        size: (height, width), or ``None``.
        color: ``grey`` or ``rgb``.
        classes: The training folder's classes, when reading a test folder: its subfolders
            must be among them.

    Raises:
        DataError: A file cannot be read, the images would not fit in memory, or a test
            folder has a class the training folder has not.
    """
    from PIL import Image

    own, files = image_files(folder)
    if classes is not None:
        unknown = [c for c in own if c not in classes]
        if unknown:
            raise DataError(
                f"{folder}: class {unknown[0]!r} is not among the training folder's "
                f"({', '.join(classes[:10])})"
            )
        position = {c: classes.index(c) for c in own}
        files = [(f, position[own[i]]) for f, i in files]
        own = tuple(classes)
    height, width = size or common_size([f for f, _ in files])
    channels = 3 if color == "rgb" else 1
    check_memory(str(folder), len(files) * channels * height * width, 4.0)
    pixels = np.empty((len(files), channels * height * width), dtype=np.uint8)
    for row, (file, _) in enumerate(files):
        try:
            with Image.open(file) as image:
                resized = image.convert(MODES[color]).resize(
                    (width, height), Image.Resampling.BILINEAR
                )
                # channel-first, as torchvision's tensors
                pixels[row] = (
                    np.asarray(resized, dtype=np.uint8)
                    .reshape(height, width, channels)
                    .transpose(2, 0, 1)
                    .reshape(-1)
                )
        except Exception as e:
            raise DataError(f"{file}: not a readable image ({type(e).__name__}: {e})") from e
    labels = np.fromiter((i for _, i in files), dtype=np.int64, count=len(files))
    return Images(pixels, labels, own, tuple(f for f, _ in files)), (height, width)
