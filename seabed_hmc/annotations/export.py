"""Predictions handed back to the annotation tools, the cover analysis and the GIS.

:func:`export_predictions` reads ``predict``'s CSV (:mod:`~seabed_hmc.annotations.predictions`) and
writes into ``out``:

* ``suggestions_TOOL.csv`` (points imported with ``import-points`` only), in the tool's own format,
  under the decision rule ``predict`` used: the decided label (the tool's label for the deepest node
  of the decision, or its nearest labelled ancestor; empty where the rule abstained: a point for a
  person) and the top ``top_k`` labels by exclusive score.

  - ``coralnet``: ``Name``, ``Row``, ``Column``, ``Label``, ``Machine suggestion i`` and ``Machine
    confidence i`` (a whole percent), the columns of CoralNet's export with machine suggestions;
  - ``biigle``: a BIIGLE CSV report of points (``filename``, ``shape_name``, ``points`` ``[x, y]``,
    ``label_name``, ``label_hierarchy``, ``label_id``) plus ``confidence``;
  - ``squidle``: a SQUIDLE+ export (``point.media.key``, ``point.x`` and ``point.y`` as shares of the
    image, ``label.id``, ``label.name``, ``label.lineage_names``, ``likelihood``, ``needs_review``:
    true where the rule abstained).

  Each reads back with ``import-points`` (and the same label map) to the same points and labels.
* ``cover_by_GROUP.csv`` for the source image and each ``by`` column (a site, a transect), and
  ``cover_all.csv`` over every point: per group and node, the share of points (decisions), the
  expected cover with the ensemble's interval, and with annotated labels the annotated cover and the
  error in percentage points (:func:`~seabed_hmc.annotations.cover.cover_by_group`);
  ``cover_by_GROUP.png``, stacked bars at ``level``.
* ``cover_error.csv`` (annotated labels only): per node, over all points, the annotated cover, the
  decided cover and its absolute error, the expected cover and its error, whether the annotated
  cover lies inside the interval, and the mean per-group error of the decided cover per grouping.
* ``points.geojson`` and ``points.gpkg`` where the points carry longitude and latitude
  (:data:`COORDINATES`): each point with its decision, decided label and score.
* ``problems.csv``: rows ``predict`` could not score and points without coordinates; ``summary.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from seabed_hmc.annotations.cover import cover_by_group, plot_cover
from seabed_hmc.annotations.label_map import read_label_ids, read_label_map
from seabed_hmc.annotations.predictions import (
    TRUE_LABELS,
    Candidates,
    ExportError,
    Predictions,
    candidates,
    decided_paths,
    exclusive_scores,
    read_predictions,
)
from seabed_hmc.atomic import write_text_atomic
from seabed_hmc.data.vector_files import point_geometries, write_geojson, write_gpkg_points
from seabed_hmc.hierarchy import DEFAULT_SEPARATOR as SEP

TOOLS = ("coralnet", "biigle", "squidle")
#: (longitude, latitude) column pairs, in the order they are looked for
COORDINATES = (
    ("point.pose.lon", "point.pose.lat"),
    ("image_longitude", "image_latitude"),
    ("Longitude", "Latitude"),
    ("longitude", "latitude"),
    ("lon", "lat"),
)


def export_predictions(
    predictions_csv: str | Path,
    out: str | Path,
    *,
    tool: str = "auto",
    label_map: str | Path | None = None,
    top_k: int = 5,
    by: tuple[str, ...] = (),
    level: int | None = None,
    split: str | None = None,
) -> dict:
    """Write the files of the module docstring; returns the summary (also ``summary.json``).
    ``split``: only the rows of that split (the ``split`` column import-points writes), e.g. the test
    rows for a cover error the model has not trained on."""
    out = Path(out)
    predictions = read_predictions(predictions_csv, split)
    if not len(predictions.frame):
        raise ExportError(f"{predictions_csv}: no row was predicted (every row has an error)")
    missing = [c for c in by if c not in predictions.frame.columns]
    if missing:
        raise ExportError(
            f"{predictions_csv} has no column {', '.join(map(repr, missing))} to group cover by; "
            f"its columns: {', '.join(c for c in predictions.frame.columns if not c.endswith(']'))}"
        )
    if top_k < 1:
        raise ExportError(f"top_k {top_k}: give at least 1 suggestion per point")
    mapping = read_label_map(label_map, predictions.hierarchy) if label_map is not None else None
    ids = read_label_ids(label_map) if label_map is not None else None
    chosen = candidates(predictions, mapping, ids)
    scores = exclusive_scores(predictions, chosen)
    decided = [chosen.label_of(path) for path in decided_paths(predictions)]
    summary = {"predictions": str(predictions_csv), "split": split or "all"}
    summary["rows"] = len(predictions.frame) + len(predictions.failed)
    summary["failed_rows"] = len(predictions.failed)
    summary["labels"] = len(chosen.labels)
    # abstained, or decided on a node with no label at or above it: the points left for a person
    summary["points_without_label"] = sum(1 for label in decided if not label)
    if predictions.has_points:
        tool = _tool(predictions, tool)
        table = suggestion_table(predictions, chosen, scores, decided, tool, top_k)
        write_text_atomic(out / f"suggestions_{tool}.csv", table.to_csv(index=False))
        summary["suggestions"] = {"tool": tool, "file": f"suggestions_{tool}.csv", "points": len(table)}
    elif tool != "auto":
        raise ExportError(
            f"{predictions_csv}: suggestions need points (source_image, row, column), as predict writes "
            "them for patches from import-points"
        )
    summary["cover"] = _write_cover(predictions, out, by, level)
    problems = [
        {"image": row["image"], "reason": f"not predicted: {row['error']}"}
        for _, row in predictions.failed.iterrows()
    ]
    summary["points_files"], located = _write_points(predictions, out, decided, scores, chosen, problems)
    summary["located_points"] = located
    summary["problems"] = len(problems)
    write_text_atomic(
        out / "problems.csv", pd.DataFrame(problems, columns=["image", "reason"]).to_csv(index=False)
    )
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=2))
    return summary


def _tool(predictions: Predictions, tool: str) -> str:
    """The tool asked for, or (``auto``) the one the points came from, by the columns it left."""
    if tool != "auto":
        if tool not in TOOLS:
            raise ExportError(f"tool {tool!r} does not exist; choose from auto, {', '.join(TOOLS)}")
        return tool
    columns = set(predictions.frame.columns)
    if {"x_fraction", "y_fraction"} <= columns:
        return "squidle"
    if "shape_name" in columns:
        return "biigle"
    return "coralnet"


def _top(scores: np.ndarray, chosen: Candidates, top_k: int) -> tuple[list[list[str]], np.ndarray]:
    order = np.argsort(-scores, axis=1, kind="stable")[:, :top_k]
    labels = [[chosen.labels[j] for j in row] for row in order]
    return labels, np.take_along_axis(scores, order, axis=1)


def suggestion_table(
    predictions: Predictions,
    chosen: Candidates,
    scores: np.ndarray,
    decided: list[str],
    tool: str,
    top_k: int,
) -> pd.DataFrame:
    """The suggestions of the module docstring, one row per point."""
    frame = predictions.frame
    index = {label: j for j, label in enumerate(chosen.labels)}
    own = np.array([scores[i, index[label]] if label else 0.0 for i, label in enumerate(decided)])
    if tool == "coralnet":
        table = pd.DataFrame(
            {"Name": frame["source_image"], "Row": frame["row"], "Column": frame["column"], "Label": decided}
        )
        labels, top = _top(scores, chosen, top_k)
        for k in range(min(top_k, len(chosen.labels))):
            table[f"Machine suggestion {k + 1}"] = [row[k] for row in labels]
            table[f"Machine confidence {k + 1}"] = np.rint(100 * top[:, k]).astype(int)
        return table
    names = [label.rpartition(SEP)[2] for label in decided]
    ids = [chosen.ids.get(label, "") for label in decided]
    if tool == "biigle":
        points = [f"[{c}, {r}]" for r, c in zip(frame["row"], frame["column"], strict=True)]
        return pd.DataFrame(
            {
                "filename": frame["source_image"],
                "shape_name": "Point",
                "points": points,
                "label_name": names,
                "label_hierarchy": decided,
                "label_id": ids,
                "confidence": own.round(4),
            }
        )
    x, y = _shares(predictions)
    table = pd.DataFrame(
        {
            "point.media.key": frame["source_image"],
            "point.x": x,
            "point.y": y,
            "label.id": ids,
            "label.name": names,
            "label.lineage_names": decided,
            "likelihood": own.round(4),
            "needs_review": [not label for label in decided],
        }
    )
    for column in ("point.id", "point.pose.lat", "point.pose.lon", "point.pose.dep"):
        if column in frame:
            table[column] = frame[column]
    return table


def _shares(predictions: Predictions) -> tuple[pd.Series, pd.Series]:
    """Each point's position as shares of its image's width and height: as imported from SQUIDLE+, or
    from the pixel position and the image size the export recorded."""
    frame = predictions.frame
    if {"x_fraction", "y_fraction"} <= set(frame.columns):
        return frame["x_fraction"], frame["y_fraction"]
    if {"image_width", "image_height"} <= set(frame.columns):
        x = (frame["column"].astype(float) + 0.5) / frame["image_width"].astype(float)
        y = (frame["row"].astype(float) + 0.5) / frame["image_height"].astype(float)
        return x.round(6), y.round(6)
    raise ExportError(
        f"{predictions.source}: SQUIDLE+ positions are shares of the image, and these points carry neither "
        "the shares (x_fraction, y_fraction) nor the image size (image_width, image_height)"
    )


def _write_cover(predictions: Predictions, out: Path, by: tuple[str, ...], level: int | None) -> dict:
    frame, hierarchy = predictions.frame, predictions.hierarchy
    truth = frame[TRUE_LABELS].tolist() if predictions.has_truth else None
    image = "source_image" if "source_image" in frame.columns else "image"
    depth = min(level - 1 if level else 1, int(hierarchy.depth.max()))
    args = (
        frame["predicted"].tolist(),
        predictions.probabilities,
        predictions.spread,
        predictions.nodes,
        hierarchy,
    )
    written, errors = {}, None
    for column in dict.fromkeys(("all", image, *by)):  # "all" first: the pooled errors
        groups = ["all"] * len(frame) if column == "all" else frame[column].tolist()
        table = cover_by_group(groups, *args, annotated=truth)
        name = "cover_all" if column == "all" else f"cover_by_{_safe(column)}"
        if column != "all":
            plot_cover(table, out / f"{name}.png", depth, f"cover by {column}")
        table = table.rename(columns={"group": column})
        write_text_atomic(out / f"{name}.csv", table.to_csv(index=False))
        written[column] = f"{name}.csv"
        if truth is not None:
            per_node = table.groupby("node", sort=False)["error_points"].mean()
            if column == "all":
                errors = table.drop(columns=["all", "points"]).rename(
                    columns={"cover_percent": "predicted_percent"}
                )
            else:
                errors = errors.merge(
                    per_node.rename(f"mean_error_by_{_safe(column)}").reset_index(), on="node"
                )
    result = {"files": written, "plot_level": depth + 1}
    if errors is not None:
        errors["expected_error_points"] = (errors["expected_percent"] - errors["annotated_percent"]).abs()
        annotated = errors["annotated_percent"]
        errors["inside_interval"] = (errors["low_percent"] <= annotated) & (
            annotated <= errors["high_percent"]
        )
        ordered = ["node", "depth", "annotated_percent", "predicted_percent", "error_points"]
        ordered += [
            "expected_percent",
            "expected_error_points",
            "low_percent",
            "high_percent",
            "inside_interval",
        ]
        errors = errors[[*ordered, *[c for c in errors.columns if c.startswith("mean_error_by_")]]]
        write_text_atomic(out / "cover_error.csv", errors.round(3).to_csv(index=False))
        result["mean_abs_error_points"] = round(float(errors["error_points"].mean()), 3)
        result["max_abs_error_points"] = round(float(errors["error_points"].max()), 3)
        result["expected_mean_abs_error_points"] = round(float(errors["expected_error_points"].mean()), 3)
        result["nodes_inside_interval"] = round(float(errors["inside_interval"].mean()), 3)
    return result


def _safe(column: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in column)


def _write_points(predictions, out, decided, scores, chosen, problems) -> tuple[list[str], int]:
    """``points.geojson`` and ``points.gpkg`` where the rows carry coordinates; rows without them are
    reported.  Returns the files written and the number of points in them."""
    frame = predictions.frame
    pair = next((p for p in COORDINATES if set(p) <= set(frame.columns)), None)
    if pair is None:
        return [], 0
    lon, lat = (pd.to_numeric(frame[c], errors="coerce") for c in pair)
    valid = lon.between(-180, 180) & lat.between(-90, 90)
    for _, row in frame[~valid].iterrows():
        problems.append(
            {"image": row["image"], "reason": f"no valid {pair[0]}/{pair[1]}: not in the points files"}
        )
    index = {label: j for j, label in enumerate(chosen.labels)}
    table = pd.DataFrame({"image": frame.get("source_image", frame["image"])})
    for column in ("row", "column"):
        if column in frame:
            table[column] = frame[column].astype(int)
    table["predicted"] = frame["predicted"]
    table["label"] = decided
    table["score"] = [
        round(float(scores[i, index[label]]), 4) if label else None for i, label in enumerate(decided)
    ]
    if predictions.has_truth:
        table[TRUE_LABELS] = frame[TRUE_LABELS]
    table, lon, lat = table[valid.to_numpy()], lon[valid].to_numpy(), lat[valid].to_numpy()
    if not len(table):
        return [], 0
    write_geojson(out / "points.geojson", point_geometries(lon, lat), table)
    write_gpkg_points(out / "points.gpkg", lon, lat, table)
    return ["points.geojson", "points.gpkg"], len(table)
