"""Georeferenced rasters as tiles: grids, valid-data masks, band scaling, and a window-reading dataset.

A survey mosaic (one GeoTIFF, several that share a CRS, or a VRT) is cut into a grid of pixel windows.
Tile size and stride are given in pixels or in CRS units; the last tile of each row and column is moved
back to end on the raster edge, so no strip is left out.  Any CRS and any axis-aligned transform work
(north-up with a negative y resolution, south-up with a positive one): windows live in pixel space and
bounds are computed with the raster's own transform.

Valid pixels come from GDAL's dataset mask (nodata tag, alpha band or an internal mask), NaN in float
bands (with or without a nodata tag) and an optional user value.  Pixel data are read per window, in
DataLoader workers, so memory does not depend on the raster size.
"""

from __future__ import annotations

import math
import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
import torch
from rasterio.enums import ColorInterp, MaskFlags
from rasterio.windows import Window
from torch.utils.data import Dataset

#: GDAL block cache per process that reads tiles (MB).
GDAL_CACHE_MB = 16


class RasterError(ValueError):
    """A raster that cannot be used as asked, with the file and what to do."""


@dataclass(frozen=True)
class RasterInfo:
    """What a tile grid needs to know about a raster (read once, in the main process)."""

    path: str
    width: int
    height: int
    count: int
    dtype: str
    crs: object
    transform: object
    nodata: float | None
    alpha_band: int | None  # 1-based
    block: tuple[int, int] = (0, 0)  # (rows, cols) of band 1's storage blocks; (0, 0) if unknown

    @property
    def res(self) -> tuple[float, float]:
        return abs(self.transform.a), abs(self.transform.e)


def raster_info(path: str | os.PathLike) -> RasterInfo:
    """Open a raster and check it is georeferenced and axis-aligned (rotated grids are refused)."""
    path = os.fspath(path)
    if not Path(path).exists():
        raise FileNotFoundError(f"raster {path} does not exist")
    try:
        with rasterio.open(path) as source:
            if source.crs is None:
                raise RasterError(
                    f"{path} has no CRS: georeference it first (e.g. gdal_edit.py -a_srs EPSG:xxxx) so "
                    "outputs can be placed on a map"
                )
            transform = source.transform
            if transform.b != 0 or transform.d != 0:
                raise RasterError(
                    f"{path} has a rotated geotransform; warp it to a north-up grid first (gdalwarp)"
                )
            alpha = [i + 1 for i, c in enumerate(source.colorinterp) if c == ColorInterp.alpha]
            return RasterInfo(
                path,
                source.width,
                source.height,
                source.count,
                source.dtypes[0],
                source.crs,
                transform,
                source.nodata,
                alpha[0] if alpha else None,
                tuple(int(v) for v in source.block_shapes[0]),
            )
    except rasterio.errors.RasterioIOError as error:
        raise RasterError(f"{path} cannot be opened as a raster: {error}") from None


def mosaic_vrt(paths: Sequence[str | os.PathLike], out: str | os.PathLike) -> Path:
    """Write a VRT that mosaics rasters sharing a CRS, resolution, band count and dtype.

    Later rasters are drawn over earlier ones where they overlap; pixels covered by none are nodata (the
    rasters' own nodata value, or 0 when they have none, with the mask taken from the sources)."""
    infos = [raster_info(p) for p in paths]
    first = infos[0]
    for info in infos[1:]:
        problems = []
        if info.crs != first.crs:
            problems.append(f"CRS {info.crs} vs {first.crs}")
        if not np.allclose(info.res, first.res, rtol=1e-9):
            problems.append(f"resolution {info.res} vs {first.res}")
        if (info.count, info.dtype) != (first.count, first.dtype):
            problems.append(f"{info.count} x {info.dtype} bands vs {first.count} x {first.dtype}")
        if np.sign(info.transform.e) != np.sign(first.transform.e):
            problems.append("north-up vs south-up")
        if problems:
            raise RasterError(
                f"{info.path} cannot be mosaicked with {first.path}: {'; '.join(problems)}; reproject "
                "them to one grid first (gdalwarp), or predict over each raster separately"
            )
    bounds = [pixel_bounds(0, 0, i.height, i.width, i.transform) for i in infos]
    west = min(b[0] for b in bounds)
    south = min(b[1] for b in bounds)
    east = max(b[2] for b in bounds)
    north = max(b[3] for b in bounds)
    xres, yres = first.res
    south_up = first.transform.e > 0
    width = round((east - west) / xres)
    height = round((north - south) / yres)
    origin_y = south if south_up else north
    dy = yres if south_up else -yres
    root = ET.Element("VRTDataset", rasterXSize=str(width), rasterYSize=str(height))
    ET.SubElement(root, "SRS").text = first.crs.to_wkt()
    ET.SubElement(root, "GeoTransform").text = f"{west!r}, {xres!r}, 0, {origin_y!r}, 0, {dy!r}"
    gdal_type = {"uint8": "Byte", "uint16": "UInt16", "int16": "Int16", "uint32": "UInt32",
                 "int32": "Int32", "float32": "Float32", "float64": "Float64"}[first.dtype]  # fmt: skip
    nodata = first.nodata
    for band in range(1, first.count + 1):
        element = ET.SubElement(root, "VRTRasterBand", dataType=gdal_type, band=str(band))
        if first.alpha_band == band:
            ET.SubElement(element, "ColorInterp").text = "Alpha"
        if nodata is not None:
            ET.SubElement(element, "NoDataValue").text = repr(float(nodata))
        for info in infos:
            kind = "ComplexSource" if info.nodata is not None else "SimpleSource"
            source = ET.SubElement(element, kind)
            ET.SubElement(source, "SourceFilename", relativeToVRT="0").text = os.path.abspath(info.path)
            ET.SubElement(source, "SourceBand").text = str(band)
            col = round((info.transform.c - west) / xres)
            row = round((info.transform.f - origin_y) / dy)
            ET.SubElement(
                source, "SrcRect", xOff="0", yOff="0", xSize=str(info.width), ySize=str(info.height)
            )
            ET.SubElement(
                source, "DstRect", xOff=str(col), yOff=str(row), xSize=str(info.width), ySize=str(info.height)
            )
            if info.nodata is not None:
                ET.SubElement(source, "NODATA").text = repr(float(info.nodata))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(root).write(out)
    return out


# ------------------------------------------------------------------------------------------- tile grid
@dataclass(frozen=True)
class TileGrid:
    """Pixel windows covering a raster (or a region of it); ``windows[i]`` is (row, col, height, width)."""

    info: RasterInfo
    size: tuple[int, int]  # (height, width) in pixels
    stride: tuple[int, int]
    windows: np.ndarray  # (tiles, 4) int64: row_off, col_off, height, width

    def __len__(self) -> int:
        return len(self.windows)

    def window(self, index: int) -> Window:
        row, col, height, width = (int(v) for v in self.windows[index])
        return Window(col, row, width, height)

    def bounds(self, index: int) -> tuple[float, float, float, float]:
        """(west, south, east, north) of a tile in the raster's CRS."""
        row, col, height, width = (int(v) for v in self.windows[index])
        return pixel_bounds(row, col, height, width, self.info.transform)


def block_friendly_order(grid: TileGrid, indices: np.ndarray, cache_bytes: int | None = None) -> np.ndarray:
    """``indices`` reordered so that GDAL decodes each compressed storage block about once.

    Row by row over a wide tiled raster, a block row of the whole width (31 MB decoded for 20,000 px
    of 512 px RGB blocks) does not fit the bounded block cache (:data:`GDAL_CACHE_MB`), so every block
    was decoded again for each tile row that touches it (2-3 times for 224 px tiles).  Here the tiles
    go row by row within vertical bands narrow enough that the blocks of two block rows of a band stay
    cached: reading 2,700 tiles of the 20,000 px benchmark raster 1.20 -> 0.80 s.  Rasters stored in
    full-width strips, or narrower than one band, keep row order.  It is the order of processing only:
    the outputs do not depend on it (up to float rounding where overlapping tiles are averaged)."""
    indices = np.asarray(indices, dtype=np.int64)
    block_rows, block_cols = grid.info.block
    if block_rows <= 0 or block_cols <= 0 or len(indices) == 0:
        return indices
    cache_bytes = GDAL_CACHE_MB * 2**20 if cache_bytes is None else cache_bytes
    block_bytes = block_rows * block_cols * grid.info.count * np.dtype(grid.info.dtype).itemsize
    band = max(1, cache_bytes // (3 * block_bytes)) * block_cols  # two block rows, and room to spare
    if band >= grid.info.width:
        return indices
    windows = grid.windows[indices]
    return indices[np.lexsort((windows[:, 1], windows[:, 0], windows[:, 1] // band))]


def pixel_bounds(row: int, col: int, height: int, width: int, transform) -> tuple[float, float, float, float]:
    """(west, south, east, north) of a block of pixels, whichever way the axes point (rasterio's own
    helpers assume north-up and swap south and north for south-up grids)."""
    xs, ys = zip(*(transform @ (c, r) for r in (row, row + height) for c in (col, col + width)), strict=True)
    return min(xs), min(ys), max(xs), max(ys)


def _offsets(start: int, stop: int, size: int, stride: int) -> list[int]:
    """Tile starts covering [start, stop): every stride, the last moved back to end on ``stop``."""
    span = stop - start
    if span <= size:
        return [start]
    offsets = list(range(start, stop - size + 1, stride))
    if offsets[-1] + size < stop:
        offsets.append(stop - size)
    return offsets


def _pixels(value: float, resolution: float, units: str, what: str) -> int:
    if units == "pixels":
        pixels = value
    elif units == "crs":
        pixels = value / resolution
    else:
        raise ValueError(f"units must be 'pixels' or 'crs', got {units!r}")
    pixels = int(round(pixels))
    if pixels < 1:
        raise ValueError(f"{what} {value} {units} is less than one pixel (resolution {resolution})")
    return pixels


def tile_grid(
    info: RasterInfo,
    size: float | tuple[float, float],
    stride: float | tuple[float, float] | None = None,
    units: str = "pixels",
    roi: tuple[float, float, float, float] | None = None,
) -> TileGrid:
    """Windows of ``size`` every ``stride`` (default: no overlap) over the raster or its part inside
    ``roi`` = (west, south, east, north) in the raster's CRS, with full edge coverage.

    A raster (or region) smaller than a tile gives one tile clipped to it."""
    size_y, size_x = (size, size) if np.isscalar(size) else size
    stride = size if stride is None else stride
    stride_y, stride_x = (stride, stride) if np.isscalar(stride) else stride
    xres, yres = info.res
    height = _pixels(size_y, yres, units, "tile height")
    width = _pixels(size_x, xres, units, "tile width")
    step_y = _pixels(stride_y, yres, units, "stride")
    step_x = _pixels(stride_x, xres, units, "stride")
    rows, cols = (0, info.height), (0, info.width)
    if roi is not None:
        window = rasterio.windows.from_bounds(*roi, transform=info.transform)
        eps = 1e-6  # bounds on pixel edges stay on them despite floating-point noise
        r0 = max(0, math.floor(window.row_off + eps))
        c0 = max(0, math.floor(window.col_off + eps))
        r1 = min(info.height, math.ceil(window.row_off + window.height - eps))
        c1 = min(info.width, math.ceil(window.col_off + window.width - eps))
        if r1 <= r0 or c1 <= c0:
            raise RasterError(f"region of interest {roi} does not overlap {info.path}")
        rows, cols = (r0, r1), (c0, c1)
    windows = [
        (r, c, min(height, rows[1] - r), min(width, cols[1] - c))
        for r in _offsets(*rows, height, step_y)
        for c in _offsets(*cols, width, step_x)
    ]
    return TileGrid(info, (height, width), (step_y, step_x), np.asarray(windows, dtype=np.int64))


# --------------------------------------------------------------------------------- reading and masks
@dataclass(frozen=True)
class BandSettings:
    """Which bands feed the encoder and how they become 8-bit RGB.

    Attributes:
        bands: 1-based band indices (1 or 3 of them); default: the first three non-alpha bands, or the
            single band repeated for one-band rasters (backscatter).
        scale: per selected band (low, high) mapped to 0..255; None: 0..255 for uint8, else the 2nd and
            98th percentiles of the valid pixels of a decimated read (:func:`band_ranges`).
        nodata: an extra user value marking invalid pixels (in every selected band).
    """

    bands: tuple[int, ...] | None = None
    scale: tuple[tuple[float, float], ...] | None = None
    nodata: float | None = None


def default_bands(info: RasterInfo) -> tuple[int, ...]:
    data_bands = [b for b in range(1, info.count + 1) if b != info.alpha_band]
    if not data_bands:
        raise RasterError(f"{info.path} has only an alpha band")
    return tuple(data_bands[:3]) if len(data_bands) >= 3 else (data_bands[0],)


def band_ranges(info: RasterInfo, bands: Sequence[int], nodata: float | None = None, samples: int = 1024):
    """Per band (2nd, 98th) percentile of the valid pixels in a decimated read (at most ``samples``
    pixels along the longer side)."""
    factor = max(1, math.ceil(max(info.width, info.height) / samples))
    shape = (max(1, info.height // factor), max(1, info.width // factor))
    with rasterio.open(info.path) as source:
        data = source.read(list(bands), out_shape=(len(bands), *shape), masked=False).astype(np.float64)
        valid = source.dataset_mask(out_shape=shape) > 0
    valid = valid & np.all(np.isfinite(data), axis=0)
    if nodata is not None:
        valid &= ~np.all(data == nodata, axis=0)
    if not valid.any():
        raise RasterError(f"{info.path} has no valid pixels (all nodata, masked or NaN)")
    ranges = []
    for band in data:
        low, high = np.percentile(band[valid], [2, 98])
        ranges.append((float(low), float(high) if high > low else float(low) + 1.0))
    return tuple(ranges)


def resolve_bands(info: RasterInfo, settings: BandSettings) -> BandSettings:
    """Fill in the defaults for this raster, checking band numbers and scale entries."""
    bands = settings.bands or default_bands(info)
    if len(bands) not in (1, 3) or any(b < 1 or b > info.count for b in bands):
        raise RasterError(
            f"bands {list(bands)} for {info.path}: give 1 or 3 band numbers between 1 and {info.count}"
        )
    scale = settings.scale
    if scale is None:
        scale = (
            ((0.0, 255.0),) * len(bands)
            if info.dtype == "uint8"
            else band_ranges(info, bands, settings.nodata)
        )
    if len(scale) != len(bands):
        raise RasterError(f"scale has {len(scale)} (low, high) pairs for {len(bands)} bands in {info.path}")
    return BandSettings(tuple(bands), tuple(tuple(map(float, s)) for s in scale), settings.nodata)


def read_window(
    source, window: Window, settings: BandSettings, out_size: tuple[int, int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, 3) uint8 RGB and (H, W) bool valid mask of a window.

    A window reaching outside the raster is read where it overlaps and filled with invalid pixels
    elsewhere; a result smaller than ``out_size`` (a tile clipped at the raster edge) is padded with
    invalid pixels at its end."""
    bands = list(settings.bands)
    full = Window(0, 0, source.width, source.height)
    inside = window.intersection(full) if rasterio.windows.intersect(window, full) else None
    shape = (int(window.height), int(window.width))
    size = shape if out_size is None else (int(out_size[0]), int(out_size[1]))
    if shape[0] > size[0] or shape[1] > size[1]:
        raise ValueError(f"window {shape} is larger than the output size {size}")
    dtype = source.dtypes[bands[0] - 1]
    # 8-bit RGB used as it is (the common case): GDAL reads straight into the (H, W, 3) result
    as_is = dtype == "uint8" and all(tuple(s) == (0.0, 255.0) for s in settings.scale)
    direct = as_is and len(bands) == 3
    if direct:
        image = np.zeros((*size, 3), dtype=np.uint8)
        raw = image.transpose(2, 0, 1)  # a band-first view of it
    else:
        raw = np.zeros((len(bands), *size), dtype=dtype)
    valid = np.zeros(size, dtype=bool)
    if inside is not None:
        r = int(inside.row_off - window.row_off)
        c = int(inside.col_off - window.col_off)
        h, w = int(inside.height), int(inside.width)
        pixels = source.read(bands, window=inside, out=raw[:, r : r + h, c : c + w])
        interleaved = image[r : r + h, c : c + w] if direct else None
        valid[r : r + h, c : c + w] = _valid(source, inside, pixels, interleaved)
    if settings.nodata is not None:
        valid &= ~np.all(raw == settings.nodata, axis=0)
    if direct:
        if not valid.all():
            image[~valid] = 0
        return image, valid
    if as_is:
        scaled = raw  # 8-bit data used as they are: no float round trip
    else:
        data = raw.astype(np.float32)
        valid &= np.all(np.isfinite(data), axis=0)
        scaled = np.empty(data.shape, dtype=np.uint8)
        for index, (low, high) in enumerate(settings.scale):
            band = (np.nan_to_num(data[index], nan=low) - low) * (255.0 / (high - low))
            np.clip(band, 0, 255, out=band)
            scaled[index] = band.astype(np.uint8)
    scaled[:, ~valid] = 0
    image = np.repeat(scaled, 3, axis=0) if len(bands) == 1 else scaled
    return np.ascontiguousarray(image.transpose(1, 2, 0)), valid


def _valid(source, window: Window, pixels: np.ndarray, interleaved: np.ndarray | None = None) -> np.ndarray:
    """GDAL's validity without a second read where possible: from the nodata value of the bands just
    read (valid where any of them differs from it), from the alpha band, or the dataset mask.
    ``interleaved``: the same pixels as (H, W, bands), for a one-pass check that no value equals the
    nodata value (then every pixel is valid: the common case inside a mosaic)."""
    flags = source.mask_flag_enums
    if all(MaskFlags.nodata in f for f in flags) and source.nodata is not None:
        if interleaved is not None and not _holds(interleaved, source.nodata):
            return np.ones(pixels.shape[1:], dtype=bool)
        valid = pixels[0] != source.nodata  # band by band: pixels may be a strided view
        for band in pixels[1:]:
            valid |= band != source.nodata
        return valid
    if all(f == [MaskFlags.all_valid] for f in flags):
        return np.ones(pixels.shape[1:], dtype=bool)
    alpha = [i + 1 for i, c in enumerate(source.colorinterp) if c == ColorInterp.alpha]
    if alpha:
        return source.read(alpha[0], window=window) > 0
    return source.dataset_mask(window=window) > 0


def _holds(array: np.ndarray, value: float) -> bool:
    """Whether any element equals ``value`` (one reduction, no temporary, for 8-bit 0 and 255)."""
    if array.dtype == np.uint8 and value in (0, 255):
        return bool(array.min() == 0) if value == 0 else bool(array.max() == 255)
    return bool((array == value).any())


class TileDataset(Dataset):
    """The tiles of a grid as model inputs; each worker opens the raster once and reads its windows.

    An item is ``{"image": (3, h, w) float tensor (after ``transform``; or the (h, w, 3) uint8 tile when
    the transform does not end in ``ToTensorV2``), "index": int,
    "valid_fraction": float}`` plus, when ``summarise`` is given, the fixed-shape arrays it returns for
    the tile's (H, W) valid mask (so the full mask need not travel back to the main process), else
    ``"valid"``: the mask itself.  Tiles listed in ``indices`` only (default: all).
    """

    def __init__(
        self,
        grid: TileGrid,
        settings: BandSettings,
        transform,
        indices: Sequence[int] | None = None,
        summarise=None,
    ):
        self.grid, self.settings, self.transform, self.summarise = grid, settings, transform, summarise
        self.indices = np.arange(len(grid)) if indices is None else np.asarray(indices, dtype=np.int64)
        self._source = self._env = None
        self._pid = None

    def __len__(self) -> int:
        return len(self.indices)

    def _open(self):
        if self._source is None or self._pid != os.getpid():  # one handle per worker process
            # GDAL's block cache defaults to 5% of RAM per process: bound it, or every worker's cache
            # grows with the raster (2 GB more on a 20,000 x 20,000 mosaic, scripts/bench_tiles.py)
            self._env = rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB * 2**20)
            self._env.__enter__()
            self._source = rasterio.open(self.grid.info.path)
            self._pid = os.getpid()
        return self._source

    def close(self) -> None:
        """Close this process's raster handle and GDAL settings (reads in the main process open them
        there); the dataset reopens on the next read."""
        if self._source is not None:
            self._source.close()
            self._env.__exit__(None, None, None)
        self._source = self._env = self._pid = None

    def __enter__(self) -> TileDataset:
        return self

    def __exit__(self, *_) -> None:
        self.close()

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_source"] = state["_env"] = None
        return state

    def __getitem__(self, item: int) -> dict:
        index = int(self.indices[item])
        image, valid = read_window(self._open(), self.grid.window(index), self.settings, self.grid.size)
        return self._item(index, image, valid)

    def __getitems__(self, items: list[int]) -> list[dict]:
        """A batch (the DataLoader's batched fetch): tiles of one grid row that touch or overlap are
        read as ONE window and cut apart, which is what makes reading cheap next to the model (one
        GDAL call and one mask per run of tiles instead of one per tile; scripts/bench_tiles.py).
        Every pixel, mask and item is the same as :meth:`__getitem__` gives (tests/test_geo.py)."""
        indices = [int(self.indices[item]) for item in items]
        tiles = np.empty((len(indices), *self.grid.size, 3), dtype=np.uint8)
        masks = self._read_into(indices, tiles)
        return [
            self._item(index, tile, mask, fraction)
            for index, tile, (mask, fraction) in zip(indices, tiles, masks, strict=True)
        ]

    def read_batch(self, items: Sequence[int]) -> dict:
        """The tiles at ``items`` already collated, as the DataLoader's default collation of
        :meth:`__getitems__` would give them but with the pixels read straight into the batch
        (no per-tile copies, no stacking); only without a per-tile ``transform``.  Use through
        :class:`TileBatches`."""
        if self.transform is not None:
            raise ValueError("read_batch reads raw tiles; with a per-tile transform use __getitems__")
        indices = [int(self.indices[item]) for item in items]
        tiles = np.empty((len(indices), *self.grid.size, 3), dtype=np.uint8)
        masks = self._read_into(indices, tiles)
        fractions = [float(mask.mean()) if fraction is None else fraction for mask, fraction in masks]
        batch = {
            "image": torch.from_numpy(tiles),
            "index": torch.tensor(indices, dtype=torch.int64),
            "valid_fraction": torch.tensor(fractions, dtype=torch.float64),
        }
        if self.summarise is None:
            batch["valid"] = torch.from_numpy(np.stack([mask for mask, _ in masks]))
        else:
            summaries = [self.summarise(mask, index) for index, (mask, _) in zip(indices, masks, strict=True)]
            batch |= {key: torch.stack([s[key] for s in summaries]) for key in summaries[0]}
        return batch

    def _read_into(self, indices: list[int], tiles: np.ndarray) -> list[tuple[np.ndarray, float | None]]:
        """Read the tiles at grid ``indices`` into ``tiles`` (N, H, W, 3), by strips of touching tiles
        of one grid row; returns each tile's (H, W) valid mask and its valid fraction when known to be
        1 without counting (None otherwise)."""
        windows = self.grid.windows[indices].tolist()  # (row, col, height, width) per position
        runs: dict[tuple[int, int], list[int]] = {}
        for position, (row, _, height, _) in enumerate(windows):
            runs.setdefault((row, height), []).append(position)
        masks: list = [None] * len(indices)
        source, (size_h, size_w) = self._open(), self.grid.size
        everywhere = np.ones((size_h, size_w), dtype=bool)
        everywhere.flags.writeable = False  # shared by every fully valid tile
        for (row, height), members in runs.items():
            members.sort(key=lambda p: windows[p][1])
            group = [members[0]]
            for position in [*members[1:], None]:
                _, last_col, _, last_width = windows[group[-1]]
                if position is not None and windows[position][1] <= last_col + last_width:
                    group.append(position)  # touches or overlaps the run so far
                    continue
                col0 = windows[group[0]][1]
                col1 = max(windows[p][1] + windows[p][3] for p in group)
                strip = Window(col0, row, col1 - col0, height)
                image, valid = read_window(source, strip, self.settings, (size_h, col1 - col0))
                all_valid = bool(valid.all())
                for member in group:
                    col, width = windows[member][1] - col0, windows[member][3]
                    tiles[member, :, :width] = image[:, col : col + width]
                    if width < size_w:
                        tiles[member, :, width:] = 0
                    if all_valid and width == size_w:  # no pixel of the tile is invalid
                        masks[member] = (everywhere, 1.0)
                    else:
                        mask = np.zeros((size_h, size_w), dtype=bool)
                        mask[:, :width] = valid[:, col : col + width]
                        masks[member] = (mask, None)
                group = [position]
        return masks

    def _item(self, index: int, image: np.ndarray, valid: np.ndarray, fraction: float | None = None) -> dict:
        tensor = self.transform(image=image)["image"] if self.transform is not None else image
        if isinstance(tensor, np.ndarray):  # no ToTensorV2: the (H, W, C) uint8 tile as it is
            tensor = torch.from_numpy(np.ascontiguousarray(tensor))
        fraction = float(valid.mean()) if fraction is None else fraction
        item = {"image": tensor, "index": index, "valid_fraction": fraction}
        if self.summarise is None:
            item["valid"] = torch.from_numpy(valid if valid.flags.writeable else valid.copy())
        else:
            item |= self.summarise(valid, index)
        return item


class TileBatches(Dataset):
    """Batches of a :class:`TileDataset` as items (use with ``DataLoader(batch_size=None)``): each item
    is :meth:`TileDataset.read_batch` of ``batch_size`` consecutive tiles, so the pixels are read
    straight into the batch (in a DataLoader worker too) instead of tile by tile and then stacked."""

    def __init__(self, tiles: TileDataset, batch_size: int):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.tiles, self.batch_size = tiles, batch_size

    def __len__(self) -> int:
        return -(-len(self.tiles) // self.batch_size)

    def __getitem__(self, batch: int) -> dict:
        if not 0 <= batch < len(self):
            raise IndexError(batch)
        start = batch * self.batch_size
        return self.tiles.read_batch(range(start, min(start + self.batch_size, len(self.tiles))))


# ------------------------------------------------------------------------------------------------ misc
@dataclass
class SkipCounts:
    """Tiles or points left out, by reason (reported at the end of a run)."""

    counts: dict[str, int] = field(default_factory=dict)

    def add(self, reason: str, number: int = 1) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + number

    def total(self) -> int:
        return sum(self.counts.values())
