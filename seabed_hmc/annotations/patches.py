"""Training patches cut around annotated points, with the manifest ``train`` reads.

:func:`import_points` reads an export, maps its labels, and writes into ``out``:

* ``unit="point"`` (CoralNet's unit): ``patches/IMAGE_rROW_cCOL.png``, a ``size`` x ``size`` patch
  centred on each point, one manifest row per point with its label path, the source image, the point's
  row and column and the export's metadata columns;
* ``unit="image"``: one manifest row per image whose labels are its points' paths (a multi-label set),
  the image copied (hard-linked where possible) into ``images/``;
* ``manifest.csv``, ``problems.csv`` (file, row, image, reason: images missing or unreadable, points
  outside their image or duplicated, labels the map does not cover, patches the edge policy skipped)
  and, when labels are unmapped, ``label_map_template.csv`` to fill in.

Every row gets a ``split``: the export's own ``split`` column where it has one, else whole images
shuffled into train, val (``val_fraction``) and test (``test_fraction``), so that the patches of one
image never sit on both sides.

The edge policy for a patch that crosses the image border: ``shift`` it inward (the point is then off
centre), ``pad`` it with black, or ``skip`` the point and report it.  An image smaller than the patch
is padded under ``shift`` too.  The run stops, after writing ``problems.csv``, only when the skipped
points are more than ``max_bad_fraction`` of all.
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from seabed_hmc.annotations.label_map import map_labels, read_label_map, write_map_template
from seabed_hmc.annotations.points import SIZE_COLUMNS, PointTable, read_points_export
from seabed_hmc.atomic import atomic_path, write_text_atomic
from seabed_hmc.data.images import BadImageError, load_image
from seabed_hmc.hierarchy import LABEL_SEPARATOR, Hierarchy

EDGE_POLICIES = ("shift", "pad", "skip")
UNITS = ("point", "image")


class PointImportError(ValueError):
    """Too many points could not be imported (the message says where the reasons are)."""


def import_points(
    export: str | Path,
    images: str | Path,
    out: str | Path,
    *,
    format: str = "auto",
    label_map: str | Path | None = None,
    hierarchy: Hierarchy | None = None,
    size: int = 224,
    edge: str = "shift",
    unit: str = "point",
    max_bad_fraction: float = 0.05,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = 0,
) -> dict:
    """Import an annotation export (module docstring); returns counts for the summary."""
    if not (0 <= val_fraction and 0 <= test_fraction and val_fraction + test_fraction < 1):
        raise ValueError(
            f"val_fraction {val_fraction} and test_fraction {test_fraction}: give shares from 0 that "
            "leave some images for training"
        )
    if edge not in EDGE_POLICIES:
        raise ValueError(f"edge policy {edge!r} does not exist; choose from {', '.join(EDGE_POLICIES)}")
    if unit not in UNITS:
        raise ValueError(f"unit {unit!r} does not exist; choose from {', '.join(UNITS)}")
    if size < 1:
        raise ValueError(f"patch size {size}: give at least 1 pixel")
    images, out = Path(images), Path(out)
    if not images.is_dir():
        raise FileNotFoundError(f"image folder {images} does not exist")
    table = read_points_export(export, format)
    mapping = read_label_map(label_map, hierarchy) if label_map is not None else None
    points, problems, unmapped = _mapped(table, mapping, hierarchy, label_map)
    points, duplicates = _without_duplicates(points, table.source)
    problems += duplicates
    writer = _point_rows if unit == "point" else _image_rows
    rows = []
    for image_name, group in points.groupby("image", sort=False):
        written, skipped = writer(images, image_name, group, out, size, edge, table)
        rows += written
        problems += skipped
    splits = _split_by_image(rows, val_fraction, test_fraction, seed)
    _write_outputs(out, rows, problems, unmapped, mapping)
    total = len(table.frame) + len(table.problems)
    counts = {
        "format": table.format,
        "points": total,
        "rows": len(rows),
        "images": int(points["image"].nunique()),
        "problems": len(problems),
        "unmapped_labels": dict(unmapped.most_common()),
        "split": splits,
    }
    if total and len(problems) / total > max_bad_fraction:
        raise PointImportError(
            f"{len(problems)} of {total} points of {export} could not be imported (more than "
            f"max_bad_fraction {max_bad_fraction}); the reasons are in {out / 'problems.csv'}"
            + (f", and {out / 'label_map_template.csv'} lists the unmapped labels" if unmapped else "")
        )
    return counts


def _problem(source: str, image: str, reason: str, row: int | str = "") -> dict:
    return {"file": source, "row": row, "image": image, "reason": reason}


def _at(point: pd.Series) -> str:
    return f"row {point['row']}, column {point['column']}"


def _mapped(table: PointTable, mapping, hierarchy, label_map) -> tuple[pd.DataFrame, list[dict], Counter]:
    """The points whose labels map to a path (column ``labels``), the problems so far, the unmapped."""
    paths, unmapped = map_labels(table.frame["label"], mapping, hierarchy)
    problems = list(table.problems)
    where = f"the label map {label_map}" if label_map is not None else "the hierarchy"
    for index in np.flatnonzero((paths == "").to_numpy()):
        point = table.frame.iloc[index]
        problems.append(_problem(table.source, point["image"], f"label {point['label']!r} is not in {where}"))
    frame = table.frame.assign(labels=paths)
    return frame[paths != ""].reset_index(drop=True), problems, unmapped


def _without_duplicates(points: pd.DataFrame, source: str) -> tuple[pd.DataFrame, list[dict]]:
    """The first of points at the same image, row and column; the others are reported."""
    repeated = points.duplicated(subset=["image", "row", "column"], keep="first")
    problems = [
        _problem(source, p["image"], f"duplicate point at {_at(p)} (the first one is kept)")
        for _, p in points[repeated].iterrows()
    ]
    return points[~repeated].reset_index(drop=True), problems


def _open(
    images: Path, name: str, group: pd.DataFrame, table: PointTable
) -> tuple[np.ndarray | None, pd.DataFrame, list]:
    """The image's pixels and its points in pixels, or None and a problem for each of its points."""
    path, source = images / name, table.source
    try:
        pixels = load_image(path)
    except BadImageError as error:
        reason = f"image {path}: {error}" if path.exists() else f"image {path} does not exist"
        return None, group, [_problem(source, name, reason) for _ in range(len(group))]
    if table.fractions:  # shares of the width and height -> the pixel the point falls in
        height, width = pixels.shape[:2]
        group = group.assign(
            row=np.minimum((group["row"] * height).astype(int), height - 1),
            column=np.minimum((group["column"] * width).astype(int), width - 1),
        )
    if set(SIZE_COLUMNS) <= set(group.columns):  # the export says how large the image is: check it
        declared = {
            (str(w), str(h)) for w, h in zip(group["image_width"], group["image_height"], strict=True)
        }
        height, width = pixels.shape[:2]
        if declared != {(str(width), str(height))}:
            sizes = ", ".join(f"{w} x {h}" for w, h in sorted(declared))
            reason = (
                f"the export says the image is {sizes} pixels, the file {path} is {width} x {height} "
                "(another image, or positions in other units)"
            )
            return None, group, [_problem(source, name, reason) for _ in range(len(group))]
    return pixels, group, []


def _outside(source: str, name: str, point: pd.Series, width: int, height: int) -> dict:
    return _problem(source, name, f"point at {_at(point)} is outside the {width} x {height} image")


def _point_rows(images, name, group, out, size, edge, table) -> tuple[list[dict], list[dict]]:
    pixels, group, problems = _open(images, name, group, table)
    source = table.source
    if pixels is None:
        return [], problems
    height, width = pixels.shape[:2]
    rows = []
    stem = Path(name).with_suffix("").as_posix().replace("/", "__")  # images in subfolders stay apart
    for _, point in group.iterrows():
        if not (point["row"] < height and point["column"] < width):
            problems.append(_outside(source, name, point, width, height))
            continue
        patch = cut_patch(pixels, point["row"], point["column"], size, edge)
        if patch is None:
            problems.append(
                _problem(source, name, f"the patch at {_at(point)} crosses the image edge (--edge skip)")
            )
            continue
        relative = f"patches/{stem}_r{point['row']}_c{point['column']}.png"
        with atomic_path(out / relative, suffix=".png") as temporary:
            Image.fromarray(patch).save(temporary, format="PNG")
        extra = {k: point[k] for k in point.index if k not in ("image", "labels")}
        rows.append({"image": relative, "labels": point["labels"], "source_image": name, **extra})
    return rows, problems


def _image_rows(images, name, group, out, size, edge, table) -> tuple[list[dict], list[dict]]:
    pixels, group, problems = _open(images, name, group, table)
    source = table.source
    if pixels is None:
        return [], problems
    height, width = pixels.shape[:2]
    inside = (group["row"] < height) & (group["column"] < width)
    problems += [_outside(source, name, point, width, height) for _, point in group[~inside].iterrows()]
    if not inside.any():
        return [], problems
    relative = f"images/{name}"
    with atomic_path(out / relative, suffix=Path(name).suffix) as temporary:
        try:
            os.link(images / name, temporary)
        except OSError:
            shutil.copyfile(images / name, temporary)
    labels = LABEL_SEPARATOR.join(dict.fromkeys(group.loc[inside, "labels"]))
    return [{"image": relative, "labels": labels, "points": int(inside.sum())}], problems


def cut_patch(pixels: np.ndarray, row: int, column: int, size: int, edge: str) -> np.ndarray | None:
    """The ``size`` x ``size`` patch centred on (row, column) under the edge policy (module docstring);
    None when ``skip`` and the patch crosses the border."""
    height, width = pixels.shape[:2]
    top, left = row - size // 2, column - size // 2
    crosses = top < 0 or left < 0 or top + size > height or left + size > width
    if crosses and edge == "skip":
        return None
    if crosses and edge == "shift" and size <= height and size <= width:
        top, left = min(max(top, 0), height - size), min(max(left, 0), width - size)
        return pixels[top : top + size, left : left + size].copy()
    patch = np.zeros((size, size, pixels.shape[2]), dtype=pixels.dtype)
    source_top, source_left = max(top, 0), max(left, 0)
    bottom, right = min(top + size, height), min(left + size, width)
    patch[source_top - top : bottom - top, source_left - left : right - left] = pixels[
        source_top:bottom, source_left:right
    ]
    return patch


def _split_by_image(rows: list[dict], val_fraction: float, test_fraction: float, seed: int) -> dict:
    """A ``split`` for every row, whole images at a time (the points of one image never straddle
    train and test): the export's own ``split`` column where it has one, else a seeded shuffle of
    the images, ``test_fraction`` of them to test and ``val_fraction`` to val (at least one image
    each where there are three or more).  Returns the rows per split and where the split came from."""
    if rows and all(str(row.get("split", "")).strip() for row in rows):
        counts = Counter(str(row["split"]).strip().lower() for row in rows)
        return {"from": "the export's split column", **dict(sorted(counts.items()))}
    images = list(dict.fromkeys(row.get("source_image", row["image"]) for row in rows))
    order = np.random.default_rng(seed).permutation(len(images))
    enough = len(images) >= 3
    test = max(int(enough and test_fraction > 0), round(test_fraction * len(images)))
    val = max(int(enough and val_fraction > 0), round(val_fraction * len(images)))
    assigned = {}
    for position, index in enumerate(order):
        assigned[images[index]] = "test" if position < test else "val" if position < test + val else "train"
    for row in rows:
        row["split"] = assigned[row.get("source_image", row["image"])]
    counts = Counter(row["split"] for row in rows)
    return {"from": f"images shuffled with seed {seed}", **dict(sorted(counts.items()))}


def _write_outputs(out: Path, rows: list[dict], problems: list[dict], unmapped: Counter, mapping) -> None:
    columns = ["file", "row", "image", "reason"]
    write_text_atomic(out / "problems.csv", pd.DataFrame(problems, columns=columns).to_csv(index=False))
    if unmapped:
        write_map_template(out / "label_map_template.csv", unmapped, mapping)
    if not rows:
        raise PointImportError(f"no point could be imported; the reasons are in {out / 'problems.csv'}")
    write_text_atomic(out / "manifest.csv", pd.DataFrame(rows).to_csv(index=False))
