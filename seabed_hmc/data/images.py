"""Image files for training: robust decoding to RGB, a one-pass check, the Dataset, channel statistics.

* :func:`load_image`: any file PIL reads, as an (H, W, 3) uint8 RGB array, or :class:`BadImageError`
  with the reason (missing, empty, truncated, not an image, too large, an unsupported pixel format).
* :func:`check_images`: decode every image of a dataset once, before training, and report the bad ones
  (:class:`ImageCheck`, with a tolerance: :meth:`ImageCheck.raise_if_too_many`).
* :class:`ImageDataset` and :func:`collate_skip_bad`: items for a DataLoader; an image that turns bad
  after the check is reported in the batch instead of killing the epoch.
* :func:`dataset_statistics`: per-channel mean and standard deviation for normalisation, streamed.

Conversion policy (one rule per pixel format, so every image of a dataset is treated alike):

* grey (``L``, ``1``), palette (``P``), ``CMYK``, ``YCbCr``: PIL's conversion to RGB (ICC profiles are
  not applied).
* 16-bit grey (``I;16*``) and 32-bit integer (``I``, how PIL opens some 16-bit files): divided by 257,
  so 0..65535 maps exactly onto 0..255 (``I`` is clipped to 0..65535 first).  A fixed scale keeps the
  brightness of every image comparable; a per-image maximum would stretch each one differently.  Data
  using fewer bits (12-bit cameras) come out dark: rescale those files beforehand.
* transparency (``RGBA``, ``LA``, ``PA``, palette with a transparent colour): composited on black, so
  transparent pixels become 0, as the nodata collar of a mosaic does.
* floating point (``F``): rejected, as it has no fixed 8-bit scale.
* EXIF orientation is applied (``ImageOps.exif_transpose``); an unreadable EXIF block is ignored.

Decompression bombs: images above :data:`MAX_IMAGE_PIXELS` pixels (read from the header, before
decoding) are rejected; PIL's own limit (``PIL.Image.MAX_IMAGE_PIXELS``, an error at twice its value) is
left as it is, and its ``DecompressionBombError`` is reported the same way.  Truncated files fail because
the image is fully decoded (``.load()``) with PIL's ``LOAD_TRUNCATED_IMAGES`` left off; that global is
never changed here, and :func:`check_images` warns when someone else has switched it on.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import torch
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError
from torch.utils.data import Dataset, default_collate

if TYPE_CHECKING:
    from seabed_hmc.data.manifest import ImageTable

PathLike = str | os.PathLike

#: The largest image accepted, in pixels (PIL's error threshold: 2 x 89.5 M, about 537 MB decoded as
#: RGB).  Survey mosaics larger than this are read as tiles (rasterio), not as one image.  Read at call
#: time, so it can be changed for a session; ``max_pixels=`` overrides it per call.
MAX_IMAGE_PIXELS = 2 * 89_478_485
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")

logger = logging.getLogger(__name__)


class BadImageError(ValueError):
    """An image file cannot be used; ``path`` and ``reason`` are kept for reports."""

    def __init__(self, path: PathLike, reason: str) -> None:
        super().__init__(f"{os.fspath(path)}: {reason}")
        self.path = os.fspath(path)
        self.reason = reason


class ImageCheckError(ValueError):
    """Too many images of a dataset are bad (see :meth:`ImageCheck.raise_if_too_many`)."""


# ------------------------------------------------------------------ one image
def load_image(path: PathLike, max_pixels: int | None = None) -> np.ndarray:
    """Decode an image file fully into an (H, W, 3) uint8 RGB array (policy in the module docstring).

    Args:
        path: the file.
        max_pixels: reject images with more pixels than this (read from the header, before
            decoding); default :data:`MAX_IMAGE_PIXELS`; 0 leaves only PIL's own limit.

    Raises:
        BadImageError: with the reason: missing or unreadable file, empty file, not an image, too many
            pixels (a decompression bomb), truncated or corrupt data, an unsupported pixel format.
    """
    file = os.fspath(path)
    _check_file(file)
    limit = MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    try:
        with Image.open(file) as image:
            width, height = image.size
            if limit and width * height > limit:
                raise BadImageError(
                    file,
                    f"{width}x{height} = {width * height} pixels, above the limit of {limit} (a "
                    "decompression bomb, or an image too large to train on: tile or downscale it, or raise "
                    "max_pixels)",
                )
            image.load()
            return _to_rgb(image, file)
    except BadImageError:
        raise
    except Image.DecompressionBombError as error:
        raise BadImageError(file, f"decompression bomb: {error}") from None
    except UnidentifiedImageError:
        raise BadImageError(file, "not an image PIL can read (unknown format or corrupt header)") from None
    except OSError as error:
        if "truncated" in str(error).lower():
            raise BadImageError(file, f"truncated file ({error})") from None
        raise BadImageError(file, f"cannot be decoded: {error}") from None
    except Exception as error:  # a corrupt file can make any decoder fail in its own way
        raise BadImageError(file, f"cannot be decoded ({type(error).__name__}: {error})") from None


def _check_file(file: str) -> None:
    try:
        size = os.stat(file).st_size
    except FileNotFoundError:
        raise BadImageError(file, "file not found") from None
    except OSError as error:
        raise BadImageError(file, f"cannot be read ({error.strerror or error})") from None
    if os.path.isdir(file):
        raise BadImageError(file, "is a folder, not an image file")
    if size == 0:
        raise BadImageError(file, "empty file (0 bytes)")


def _to_rgb(image: Image.Image, file: str) -> np.ndarray:
    """(H, W, 3) uint8 RGB from a loaded PIL image, orientation applied."""
    try:
        image = ImageOps.exif_transpose(image)
    except Exception:  # a broken EXIF block leaves the pixels as stored
        logger.debug("%s: unreadable EXIF orientation ignored", file)
    mode = image.mode
    if mode == "RGB":
        return np.ascontiguousarray(np.asarray(image, dtype=np.uint8))
    if mode in _SIXTEEN_BIT_MODES:
        values = np.clip(np.asarray(image).astype(np.float32), 0, 65535)
        grey = np.rint(values / 257.0).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))
    if mode == "F":
        raise BadImageError(
            file, "floating-point pixels (mode F) have no fixed 8-bit scale; convert the file to 8 or 16 bit"
        )
    if mode in _ALPHA_MODES or (mode == "P" and "transparency" in image.info):
        rgba = np.asarray(image.convert("RGBA"), dtype=np.uint16)
        composite = (rgba[:, :, :3] * rgba[:, :, 3:] + 127) // 255
        return np.ascontiguousarray(composite.astype(np.uint8))
    try:
        return np.ascontiguousarray(np.asarray(image.convert("RGB"), dtype=np.uint8))
    except (ValueError, OSError) as error:
        raise BadImageError(file, f"pixel format {mode!r} cannot be converted to RGB ({error})") from None


# ------------------------------------------------------------------ checking a dataset
@dataclass
class ImageCheck:
    """The result of decoding every image of a dataset once.

    Attributes:
        total: the number of images checked.
        good: (good,) int64 positions (into the checked paths) of the images that decode.
        bad: (bad,) int64 positions of the others, in order.
        problems: ``(path, reason)`` for each bad image, in the order of ``bad``.
    """

    total: int
    good: np.ndarray
    bad: np.ndarray
    problems: list[tuple[str, str]] = field(default_factory=list)

    @property
    def bad_fraction(self) -> float:
        return len(self.bad) / self.total if self.total else 0.0

    def raise_if_too_many(self, max_bad_fraction: float = 0.0, shown: int = 5) -> ImageCheck:
        """Raise when more than ``max_bad_fraction`` of the images are bad, else log their count.

        Returns the check itself, so ``check_images(paths).raise_if_too_many(0.01).good`` reads well.

        Raises:
            ImageCheckError: listing the count, the share and the first ``shown`` problems.
        """
        if not 0.0 <= max_bad_fraction <= 1.0:
            raise ValueError(f"max_bad_fraction must lie in [0, 1], not {max_bad_fraction}")
        if not self.problems:
            return self
        summary = f"{len(self.bad)} of {self.total} images ({self.bad_fraction:.2%}) cannot be used"
        if self.bad_fraction > max_bad_fraction:
            listed = "\n".join(f"  {path}: {reason}" for path, reason in self.problems[:shown])
            more = f"\n  ... and {len(self.problems) - shown} more" if len(self.problems) > shown else ""
            raise ImageCheckError(
                f"{summary}, more than the allowed {max_bad_fraction:.2%} (max_bad_fraction):\n"
                f"{listed}{more}\nFix or remove these files (or their manifest rows), or raise "
                "max_bad_fraction (data.max_bad_fraction in a run config) to go on without them"
            )
        logger.warning("%s; they are left out (first: %s: %s)", summary, *self.problems[0])
        return self


def check_images(paths: Iterable[PathLike], workers: int = 2, max_pixels: int | None = None) -> ImageCheck:
    """Fully decode every image once (``workers`` threads; PIL decodes outside the GIL).

    Memory stays bounded by ``workers`` decoded images.  Nothing is cached: a second call decodes again.
    """
    files = [os.fspath(path) for path in paths]
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        warnings.warn(
            "PIL.ImageFile.LOAD_TRUNCATED_IMAGES is on (set by other code), so truncated images pass the "
            "check with grey filling; switch it off to detect them",
            stacklevel=2,
        )

    def problem(file: str) -> str | None:
        try:
            load_image(file, max_pixels)
        except BadImageError as error:
            return error.reason
        return None

    if workers <= 1 or len(files) <= 1:
        reasons = [problem(file) for file in files]
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            reasons = list(pool.map(problem, files))
    good = [i for i, reason in enumerate(reasons) if reason is None]
    bad = [i for i, reason in enumerate(reasons) if reason is not None]
    return ImageCheck(
        total=len(files),
        good=np.asarray(good, dtype=np.int64),
        bad=np.asarray(bad, dtype=np.int64),
        problems=[(files[i], str(reasons[i])) for i in bad],
    )


# ------------------------------------------------------------------ dataset
class ImageDataset(Dataset):
    """Images with their targets and masks, one dict per item.

    An item is ``{"image": (3, H, W) float32, "targets": (nodes,), "mask": (nodes,), "index": int,
    "ok": True}``.  An image that fails to load (it passed :func:`check_images` but broke since) gives
    ``{"image": None, "targets", "mask", "index", "ok": False, "reason": str}`` instead of raising, so
    one file cannot end an epoch: use :func:`collate_skip_bad` as the DataLoader's ``collate_fn``.

    Args:
        paths: image files.
        targets: (images, nodes) targets.
        mask: (images, nodes) known-node mask; None means all known.
        transform: an albumentations pipeline (called as ``transform(image=array)["image"]``) such as
            :func:`seabed_hmc.data.build_transform`; it should end with ``ToTensorV2``.  None gives the
            image as float32 in [0, 1].
        max_pixels: passed to :func:`load_image`.
    """

    def __init__(
        self,
        paths: Sequence[PathLike],
        targets: torch.Tensor,
        mask: torch.Tensor | None = None,
        transform: Callable[..., Any] | None = None,
        max_pixels: int | None = None,
    ) -> None:
        self.paths = [os.fspath(path) for path in paths]
        self.targets = torch.as_tensor(targets, dtype=torch.float32)
        self.mask = (
            torch.ones_like(self.targets) if mask is None else torch.as_tensor(mask, dtype=torch.float32)
        )
        if self.targets.ndim != 2 or len(self.targets) != len(self.paths):
            raise ValueError(
                f"targets must be (images, nodes) with one row per path: {len(self.paths)} paths, "
                f"targets of shape {tuple(self.targets.shape)}"
            )
        if self.mask.shape != self.targets.shape:
            raise ValueError(
                f"mask shape {tuple(self.mask.shape)} differs from targets {tuple(self.targets.shape)}"
            )
        self.transform = transform
        self.max_pixels = max_pixels

    @classmethod
    def from_table(cls, table: ImageTable, transform: Callable[..., Any] | None = None) -> ImageDataset:
        """The dataset of an :class:`~seabed_hmc.data.manifest.ImageTable` (its paths, targets, mask)."""
        return cls(table.paths, table.targets, table.mask, transform)

    def __len__(self) -> int:
        return len(self.paths)

    def seed(self, seed: int) -> None:
        """Seed the transform's random generator (albumentations pipelines), for reproducible views."""
        if hasattr(self.transform, "set_random_seed"):
            self.transform.set_random_seed(int(seed) % 2**32)

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = int(index)
        item: dict[str, Any] = {"targets": self.targets[index], "mask": self.mask[index], "index": index}
        try:
            array = load_image(self.paths[index], self.max_pixels)
        except BadImageError as error:
            return {"image": None, **item, "ok": False, "reason": error.reason}
        return {"image": self._to_tensor(array), **item, "ok": True}

    def _to_tensor(self, array: np.ndarray) -> torch.Tensor:
        image = array if self.transform is None else self.transform(image=array)["image"]
        if isinstance(image, np.ndarray):
            scale = 255.0 if image.dtype == np.uint8 else 1.0
            image = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float().div_(scale)
        return image if image.dtype == torch.uint8 else image.float()  # uint8: normalised on the device


def collate_skip_bad(batch: list[dict[str, Any]]) -> dict[str, Any]:
    """Collate the good items of a batch; list the dataset indices of the bad ones.

    Returns ``default_collate`` of the good items (``image`` (B, 3, H, W), ``targets``, ``mask``,
    ``index`` (B,)) plus ``"bad"`` (dataset indices of the items that failed to load) and
    ``"bad_reasons"`` (their reasons).  When every item is bad, only ``"index"`` (empty), ``"bad"`` and
    ``"bad_reasons"`` are present: skip such a batch.
    """
    good = [{k: v for k, v in item.items() if k not in ("ok", "reason")} for item in batch if item["ok"]]
    bad = [item for item in batch if not item["ok"]]
    collated = default_collate(good) if good else {"index": torch.empty(0, dtype=torch.long)}
    collated["bad"] = [int(item["index"]) for item in bad]
    collated["bad_reasons"] = [str(item["reason"]) for item in bad]
    return collated


# ------------------------------------------------------------------ statistics
def dataset_statistics(
    paths: Sequence[PathLike],
    size: int | tuple[int, int] | None = 224,
    max_images: int | None = None,
    workers: int = 2,
    seed: int = 0,
) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """Per-channel (R, G, B) mean and standard deviation in [0, 1] units, for ``Normalize``.

    Streamed: each image adds its 256-bin per-channel histogram to a running total, so memory is
    bounded whatever the dataset size and the result is exact (no floating-point accumulation).

    Args:
        paths: image files; bad ones are skipped with a logged count.
        size: resize every image to ``size`` (an int for square, or (height, width); area
            interpolation) so each image weighs the same; None keeps native sizes (pixels weigh the
            same, large images count more).
        max_images: use a random sample of this many images (``seed``); None uses them all.
        workers: decoding threads.

    Returns:
        ``(mean, std)``, each a tuple of three floats; std is the population standard deviation.

    Raises:
        ValueError: no path, or no image could be decoded.
    """
    files = [os.fspath(path) for path in paths]
    if not files:
        raise ValueError("dataset_statistics needs at least one image path")
    if max_images is not None and max_images < len(files):
        chosen = np.sort(np.random.default_rng(seed).choice(len(files), size=max_images, replace=False))
        files = [files[i] for i in chosen]
    height_width = (size, size) if isinstance(size, int) else size

    def histogram(file: str) -> np.ndarray | None:
        try:
            array = load_image(file)
        except BadImageError:
            return None
        if height_width is not None and array.shape[:2] != tuple(height_width):
            array = cv2.resize(array, (height_width[1], height_width[0]), interpolation=cv2.INTER_AREA)
        return np.stack([np.bincount(array[:, :, c].ravel(), minlength=256) for c in range(3)])

    counts = np.zeros((3, 256), dtype=np.int64)
    bad = 0
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for result in pool.map(histogram, files):
            if result is None:
                bad += 1
            else:
                counts += result
    if bad == len(files):
        raise ValueError(
            f"none of the {len(files)} images could be decoded; run check_images for the reasons"
        )
    if bad:
        logger.warning(
            "dataset_statistics: %d of %d images could not be decoded and were skipped", bad, len(files)
        )
    values = np.arange(256, dtype=np.float64) / 255.0
    total = counts.sum(axis=1)
    mean = (counts * values).sum(axis=1) / total
    variance = (counts * (values[None, :] - mean[:, None]) ** 2).sum(axis=1) / total
    std = np.sqrt(variance)
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)  # type: ignore[return-value]
