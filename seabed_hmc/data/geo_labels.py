"""Training data from georeferenced labels: chips around labelled points, tiles of a label raster.

Both write ordinary image files and a manifest (DESIGN.md format, plus ``x``, ``y``, ``crs`` and the
pixel window), so the ``train`` command and everything after it use tiles exactly as they use photos:

    seabed-hmc chips --raster mosaic.tif --points stations.csv --out chips/    # then
    seabed-hmc train --config C --set data.manifest=chips/manifest.csv

Points come from a CSV (x, y, labels, and a ``crs`` column or ``--crs``), a GeoJSON FeatureCollection
(lon/lat per RFC 7946 unless it names another CRS) or a GeoPackage point layer; they are reprojected to
the raster's CRS.  Points outside the raster, or whose centre pixel is invalid, are reported in
``problems.csv`` and skipped.  A label raster (class ids on the mosaic's grid) with a table of id ->
hierarchy path gives each tile the classes covering at least ``min_fraction`` of its valid pixels.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import rasterio
from PIL import Image
from rasterio.warp import transform as warp_transform
from rasterio.windows import Window

from seabed_hmc.data.geo import (
    BandSettings,
    RasterError,
    raster_info,
    read_window,
    resolve_bands,
    tile_grid,
)
from seabed_hmc.remedies import option, remedies

log = logging.getLogger("seabed_hmc")


# ------------------------------------------------------------------------------------------- points
def read_points(path: str | Path, crs: str | None = None, label_column: str = "labels") -> pd.DataFrame:
    """Points as a frame with ``x``, ``y``, ``crs``, ``labels`` and any other columns/properties."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"points file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix in (".geojson", ".json"):
        frame = _geojson_points(path)
    elif suffix == ".gpkg":
        frame = _geopackage_points(path)
    elif suffix in (".csv", ".txt"):
        frame = pd.read_csv(path)
        missing = [c for c in ("x", "y") if c not in frame.columns]
        if missing:
            raise ValueError(f"{path}: columns {missing} are missing (need x, y and {label_column!r})")
    else:
        raise ValueError(f"{path}: points must be a .csv, .geojson or .gpkg file")
    if crs is not None:
        frame["crs"] = crs
    if "crs" not in frame.columns or frame["crs"].isna().any():
        raise ValueError(
            f"{path}: the points' CRS is unknown; "
            + remedies("add a 'crs' column", option("crs", why="(e.g. EPSG:4326)"))
        )
    if label_column not in frame.columns:
        raise ValueError(f"{path}: no {label_column!r} column/property with the hierarchy paths")
    frame = frame.rename(columns={label_column: "labels"}) if label_column != "labels" else frame
    for axis in ("x", "y"):
        bad = pd.to_numeric(frame[axis], errors="coerce").isna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise ValueError(f"{path}: row {row + 1} has a non-numeric {axis} ({frame[axis].iloc[row]!r})")
        frame[axis] = frame[axis].astype(float)
    return frame.reset_index(drop=True)


def _geojson_points(path: Path) -> pd.DataFrame:
    try:
        collection = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not valid GeoJSON: {error}") from None
    crs = "EPSG:4326"
    named = (collection.get("crs") or {}).get("properties", {}).get("name")
    if named:  # the pre-RFC 7946 "crs" member, still written by many tools
        crs = named.replace("urn:ogc:def:crs:", "").replace("::", ":").replace("OGC:1.3:CRS84", "EPSG:4326")
    rows = []
    for number, feature in enumerate(collection.get("features", []), start=1):
        geometry = feature.get("geometry") or {}
        if geometry.get("type") != "Point":
            raise ValueError(f"{path}: feature {number} is a {geometry.get('type')}, not a Point")
        x, y = geometry["coordinates"][:2]
        rows.append({**(feature.get("properties") or {}), "x": x, "y": y, "crs": crs})
    if not rows:
        raise ValueError(f"{path} has no point features")
    return pd.DataFrame(rows)


def _geopackage_points(path: Path) -> pd.DataFrame:
    """The first point feature table of a GeoPackage (OGC 12-128r18), read with sqlite3."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as connection:
        try:
            table, column, srs = connection.execute(
                "SELECT c.table_name, g.column_name, g.srs_id FROM gpkg_contents c JOIN "
                "gpkg_geometry_columns g ON c.table_name = g.table_name WHERE c.data_type = 'features'"
            ).fetchone()
        except (sqlite3.DatabaseError, TypeError):
            raise ValueError(f"{path} is not a GeoPackage with a feature table") from None
        organisation = connection.execute(
            "SELECT organization, organization_coordsys_id FROM gpkg_spatial_ref_sys WHERE srs_id = ?", (srs,)
        ).fetchone()
        frame = pd.read_sql_query(f'SELECT * FROM "{table}"', connection)
    crs = f"{organisation[0].upper()}:{organisation[1]}" if organisation else None
    xs, ys = zip(*(_gpkg_point(blob, path, i) for i, blob in enumerate(frame[column], start=1)), strict=True)
    frame = frame.drop(columns=[column]).assign(x=xs, y=ys, crs=crs)
    return frame


def _gpkg_point(blob: bytes, path: Path, row: int) -> tuple[float, float]:
    if blob is None or blob[:2] != b"GP":
        raise ValueError(f"{path}: feature {row} has no GeoPackage geometry")
    flags = blob[3]
    envelope = {0: 0, 1: 32, 2: 48, 3: 48, 4: 64}.get((flags >> 1) & 0x7)
    if envelope is None:
        raise ValueError(f"{path}: feature {row} has an invalid envelope code")
    wkb = blob[8 + envelope :]
    order = "<" if wkb[0] == 1 else ">"
    kind = struct.unpack(order + "I", wkb[1:5])[0] % 1000
    if kind != 1:
        raise ValueError(f"{path}: feature {row} is not a Point (WKB type {kind})")
    return struct.unpack(order + "dd", wkb[5:21])


def write_point_chips(
    raster: str | Path,
    points: pd.DataFrame,
    out: str | Path,
    chip_size: int = 224,
    bands: BandSettings | None = None,
) -> dict:
    """A PNG chip centred on each point, ``manifest.csv`` and ``problems.csv`` in ``out``.

    Returns counts: ``{"chips": written, "outside": ..., "nodata": ...}``."""
    out = Path(out)
    (out / "chips").mkdir(parents=True, exist_ok=True)
    info = raster_info(raster)
    warning = label_like(info)
    settings = resolve_bands(info, bands or BandSettings())
    xs, ys = np.empty(len(points)), np.empty(len(points))
    for crs, group in points.groupby("crs", sort=False):
        tx, ty = warp_transform(crs, info.crs, group["x"].to_numpy(), group["y"].to_numpy())
        xs[group.index], ys[group.index] = tx, ty
    inverse = ~info.transform
    rows, problems = [], []
    with rasterio.open(info.path) as source:
        for index, point in points.iterrows():
            col, row = inverse @ (xs[index], ys[index])
            where = {"point": index + 1, "x": point["x"], "y": point["y"], "crs": point["crs"]}
            if not (0 <= col < info.width and 0 <= row < info.height):
                problems.append({**where, "reason": "outside the raster"})
                continue
            window = Window(int(col) - chip_size // 2, int(row) - chip_size // 2, chip_size, chip_size)
            image, valid = read_window(source, window, settings)
            if not valid[chip_size // 2, chip_size // 2]:
                problems.append({**where, "reason": "on nodata (the centre pixel is invalid)"})
                continue
            name = f"chips/point_{index + 1:06d}.png"
            Image.fromarray(image).save(out / name)
            extra = {k: v for k, v in point.items() if k not in ("x", "y", "crs", "labels")}
            rows.append(
                {
                    "image": name,
                    "labels": point["labels"],
                    **extra,
                    **where,
                    "row": int(row),
                    "col": int(col),
                    "valid_fraction": round(float(valid.mean()), 4),
                }  # fmt: skip
            )
    _write_manifest(out, rows, problems, info.path)
    reasons = pd.Series([p["reason"] for p in problems], dtype=str)
    counts = {
        "chips": len(rows),
        "outside": int((reasons == "outside the raster").sum()),
        "nodata": int(reasons.str.startswith("on nodata").sum()),
    }
    return {**counts, "warning": warning} if warning else counts


# -------------------------------------------------------------------------------------- label raster
def read_class_table(path: str | Path) -> dict[int, str]:
    """A CSV with ``id`` and ``path`` columns (class id in the label raster -> hierarchy path)."""
    path = Path(path)
    table = pd.read_csv(path)
    missing = [c for c in ("id", "path") if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: columns {missing} are missing (need id and path)")
    duplicated = table["id"][table["id"].duplicated()]
    if len(duplicated):
        raise ValueError(f"{path}: class id {duplicated.iloc[0]} is listed twice")
    return {int(i): str(p) for i, p in zip(table["id"], table["path"], strict=True)}


def write_label_tiles(
    raster: str | Path,
    label_raster: str | Path,
    classes: dict[int, str],
    out: str | Path,
    tile_size: int = 224,
    stride: int | None = None,
    min_fraction: float = 0.1,
    max_invalid: float = 0.5,
    bands: BandSettings | None = None,
) -> dict:
    """Image tiles with the multi-label set of classes covering >= ``min_fraction`` of their valid
    pixels; ``manifest.csv`` and ``problems.csv`` (ids missing from the table, empty tiles) in ``out``."""
    out = Path(out)
    info, labels_info = raster_info(raster), raster_info(label_raster)
    if os.path.samefile(info.path, labels_info.path):
        raise RasterError(
            f"the image raster and the label raster are the same file ({raster}): tiles would be cut "
            "from class ids, not imagery; give the survey imagery as the image raster"
        )
    warning = label_like(info, classes)
    (out / "tiles").mkdir(parents=True, exist_ok=True)
    if (
        labels_info.crs != info.crs
        or (labels_info.width, labels_info.height) != (info.width, info.height)
        or not np.allclose(tuple(labels_info.transform)[:6], tuple(info.transform)[:6])
    ):
        raise RasterError(
            f"label raster {label_raster} is not on the grid of {raster} (CRS, size and transform must "
            "match); resample it onto the image grid first (gdalwarp -te ... -tr ... -r near)"
        )
    settings = resolve_bands(info, bands or BandSettings())
    grid = tile_grid(info, tile_size, stride)
    rows, problems, unknown = [], [], {}
    with rasterio.open(info.path) as source, rasterio.open(labels_info.path) as labels_source:
        for index in range(len(grid)):
            window = grid.window(index)
            image, valid = read_window(source, window, settings)
            ids = labels_source.read(1, window=window)
            if labels_info.nodata is not None:
                valid &= ids != labels_info.nodata
            where = {"tile": index, "row": int(window.row_off), "col": int(window.col_off)}
            if valid.mean() < 1 - max_invalid or not valid.any():
                problems.append({**where, "reason": f"more than {max_invalid:.0%} invalid pixels"})
                continue
            values, counts = np.unique(ids[valid], return_counts=True)
            for value in values:
                if int(value) not in classes:
                    unknown[int(value)] = unknown.get(int(value), 0) + 1
            share = counts / valid.sum()
            chosen = [
                classes[int(v)]
                for v, f in zip(values, share, strict=True)
                if f >= min_fraction and int(v) in classes
            ]
            if not chosen:
                problems.append({**where, "reason": f"no known class covers {min_fraction:.0%} of the tile"})
                continue
            name = f"tiles/tile_{index:06d}.png"
            Image.fromarray(image).save(out / name)
            west, south, east, north = grid.bounds(index)
            rows.append(
                {
                    "image": name,
                    "labels": "|".join(dict.fromkeys(chosen)),
                    **where,
                    "x": (west + east) / 2,
                    "y": (south + north) / 2,
                    "crs": str(info.crs),
                    "valid_fraction": round(float(valid.mean()), 4),
                }  # fmt: skip
            )
    for value, tiles in unknown.items():
        reason = f"class id {value} (in {tiles} tiles) is not in the class table"
        problems.append({"tile": -1, "row": -1, "col": -1, "reason": reason})
    _write_manifest(out, rows, problems, info.path)
    counts = {"tiles": len(rows), "skipped": len(problems) - len(unknown), "unknown_ids": len(unknown)}
    return {**counts, "warning": warning} if warning else counts


LABEL_LIKE_VALUES = 32  # a one-band integer raster with at most this many values looks like class ids


def label_like(info, classes: dict[int, str] | None = None) -> str | None:
    """A warning (also logged) when the image raster looks like a label raster: one integer band whose
    values (read from a decimated copy) are few, or are all ids of the class table.  None otherwise."""
    if info.count != 1 or not np.issubdtype(np.dtype(info.dtype), np.integer):
        return None
    scale = max(1, max(info.width, info.height) // 1024)
    with rasterio.open(info.path) as source:
        sample = source.read(1, out_shape=(max(1, info.height // scale), max(1, info.width // scale)))
    values = np.unique(sample if info.nodata is None else sample[sample != info.nodata])
    ids = set(classes or ())
    if len(values) > LABEL_LIKE_VALUES and not (ids and set(values.tolist()) <= ids):
        return None
    warning = (
        f"the image raster {info.path} looks like a label raster (one {info.dtype} band with "
        f"{len(values)} distinct values{', all class ids' if ids and set(values.tolist()) <= ids else ''}): "
        "the images would show class ids, not the seafloor; check that it is the survey imagery"
    )
    log.warning(warning)
    return warning


def _write_manifest(out: Path, rows: list[dict], problems: list[dict], source: str) -> None:
    pd.DataFrame(problems, columns=None if problems else ["reason"]).to_csv(out / "problems.csv", index=False)
    if not rows:
        raise RasterError(
            f"no chip or tile could be made from {source}; see the reasons in {out / 'problems.csv'}"
        )
    pd.DataFrame(rows).to_csv(out / "manifest.csv", index=False)
