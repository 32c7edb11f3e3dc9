"""Predictions handed back: suggestions in each tool's format that read back to the same points and
labels, percent cover with the ensemble's interval, GeoPackage and GeoJSON points."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from seabed_hmc.annotations.cover import cover_by_group
from seabed_hmc.annotations.export import export_predictions
from seabed_hmc.annotations.label_map import map_labels, read_label_map
from seabed_hmc.annotations.patches import import_points
from seabed_hmc.annotations.points import read_points_export
from seabed_hmc.annotations.predictions import (
    Candidates,
    ExportError,
    Predictions,
    exclusive_scores,
    read_predictions,
)
from seabed_hmc.cli import main
from seabed_hmc.data.geo_labels import read_points
from seabed_hmc.data.vector_files import GPKG_APPLICATION_ID, write_gpkg_points
from seabed_hmc.engine.inference import predict_images
from seabed_hmc.engine.train import train
from seabed_hmc.hierarchy import from_paths
from tests.test_train import tiny_config

PATHS = ["Biota > Algae > Kelp", "Biota > Algae > Turf", "Substrate > Sand"]
CODES = {"KELP": PATHS[0], "TURF": PATHS[1], "SAND": PATHS[2]}
IDS = {"KELP": "11", "TURF": "12", "SAND": "20"}


def coherent(rng, hierarchy, rows):
    """Random probabilities obeying the max-constraint: a node at least as probable as its children."""
    p = rng.uniform(0, 1, (rows, len(hierarchy)))
    for node in reversed(hierarchy.topological_order):
        for child in hierarchy.children[node]:
            p[:, node] = np.maximum(p[:, node], p[:, child])
    return p


def test_a_labels_exclusive_score_is_its_probability_less_its_most_probable_labelled_descendant():
    hierarchy = from_paths(["A > B > C", "A > B > D", "A > E", "F"])
    nodes = list(hierarchy.nodes)
    rng = np.random.default_rng(0)
    p = coherent(rng, hierarchy, 50)
    predictions = Predictions(pd.DataFrame(index=range(50)), pd.DataFrame(), nodes, p, 0 * p, hierarchy, "t")
    # labels on A, A > B (twice: two codes on one node), A > B > C and F; none on D or E
    chosen = Candidates(["a", "b", "b2", "c", "f"], ["A", "A > B", "A > B", "A > B > C", "F"], {})
    got = exclusive_scores(predictions, chosen)
    column = {n: i for i, n in enumerate(nodes)}
    for row in range(50):
        for j, path in enumerate(chosen.paths):
            below = [q for q in chosen.paths if q.startswith(path + " > ")]
            expected = p[row, column[path]] - max((p[row, column[q]] for q in below), default=0.0)
            assert got[row, j] == pytest.approx(expected)
    assert chosen.label_of("A > B > D") == "b" and chosen.label_of("A > E") == "a"
    assert chosen.label_of("F") == "f" and chosen.label_of("G") == ""


def test_cover_counts_decisions_and_its_interval_bounds_the_heads_own_cover():
    hierarchy = from_paths(["A > B", "A > C", "D"])
    nodes = list(hierarchy.nodes)
    rng = np.random.default_rng(2)
    heads = np.stack([coherent(rng, hierarchy, 40) for _ in range(3)])  # (heads, points, nodes)
    mean, spread = heads.mean(axis=0), heads.std(axis=0, ddof=1)
    groups = ["s1"] * 15 + ["s2"] * 25
    predicted = [["A > B", "A > C", "D", "abstain"][i % 4] for i in range(40)]
    annotated = [["A > B", "A > B", "D", "A"][i % 4] for i in range(40)]
    table = cover_by_group(groups, predicted, mean, spread, nodes, hierarchy, annotated)
    for group, rows in (("s1", range(15)), ("s2", range(15, 40))):
        part = table[table["group"] == group].set_index("node")
        for index, node in enumerate(nodes):
            share = np.mean([predicted[i] != "abstain" and predicted[i].startswith(node) for i in rows])
            truth = np.mean([annotated[i].startswith(node) for i in rows])
            assert part.loc[node, "cover_percent"] == pytest.approx(100 * share, abs=1e-3)
            assert part.loc[node, "error_points"] == pytest.approx(100 * abs(share - truth), abs=2e-3)
            heads_cover = 100 * heads[:, list(rows), index].mean(axis=1)
            assert part.loc[node, "expected_percent"] == pytest.approx(heads_cover.mean(), abs=1e-3)
            half = part.loc[node, "high_percent"] - part.loc[node, "expected_percent"]
            assert heads_cover.std(ddof=1) <= half + 1e-3 or part.loc[node, "high_percent"] == 100


def test_a_geopackage_of_points_reads_back_with_its_attributes(tmp_path):
    table = pd.DataFrame({"image": ["a.png", "b.png"], "score": [0.5, np.nan], "row": [3, 4]})
    path = tmp_path / "points.gpkg"
    write_gpkg_points(path, [147.25, 147.5], [-42.5, -42.75], table)
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA application_id").fetchone()[0] == GPKG_APPLICATION_ID
        assert db.execute("SELECT min_x, max_y, srs_id FROM gpkg_contents").fetchone() == (
            147.25,
            -42.5,
            4326,
        )
        blob = db.execute("SELECT geom FROM points WHERE fid = 1").fetchone()[0]
    assert blob[:4] == b"GP\x00\x01" and len(blob) == 8 + 21  # header without envelope, WKB point
    back = read_points(path, label_column="image")
    assert back[["labels", "x", "y", "crs"]].values.tolist() == [
        ["a.png", 147.25, -42.5, "EPSG:4326"],
        ["b.png", 147.5, -42.75, "EPSG:4326"],
    ]
    assert back["score"].isna().tolist() == [False, True] and back["row"].tolist() == [3, 4]


# ------------------------------------------------------------------ import -> train -> predict -> export


def _images(folder):
    """Three 64 x 48 images, each region a class: kelp dark green, turf olive, sand pale (and noise)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(5)
    colours = {"KELP": (20, 90, 30), "TURF": (120, 120, 40), "SAND": (220, 200, 160)}
    points = []
    for number in range(3):
        pixels = np.zeros((48, 64, 3), dtype=np.uint8)
        for band, code in enumerate(["KELP", "TURF", "SAND"]):
            code = ["KELP", "TURF", "SAND"][(band + number) % 3]
            pixels[:, band * 21 : (band + 1) * 21 + 1] = colours[code]
            points += [(f"img{number}.png", row, band * 21 + 10, code) for row in (8, 20, 32, 40)]
        noisy = pixels.astype(int) + rng.integers(-15, 16, pixels.shape)
        Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(folder / f"img{number}.png")
    return points


def _exports(tmp_path, points):
    """The same points as a CoralNet export, a BIIGLE report and a SQUIDLE+ export."""
    split = ["train", "train", "val", "test"] * (len(points) // 4)
    coralnet = pd.DataFrame(points, columns=["Name", "Row", "Column", "Label"]).assign(split=split)
    coralnet.to_csv(tmp_path / "coralnet.csv", index=False)
    biigle = pd.DataFrame(
        {
            "filename": [p[0] for p in points],
            "shape_name": "Point",
            "points": [f"[{p[2]}, {p[1]}]" for p in points],
            "label_name": [CODES[p[3]].split(" > ")[-1] for p in points],
            "label_hierarchy": [CODES[p[3]] for p in points],
            "label_id": [IDS[p[3]] for p in points],
            "image_latitude": "-42.5",
            "image_longitude": [f"{147 + i / 100}" for i in range(len(points))],
        }
    )
    biigle.to_csv(tmp_path / "biigle.csv", index=False)
    squidle = pd.DataFrame(
        {
            "point.media.key": [p[0].removesuffix(".png") for p in points],
            "point.media.path_best": [f"https://example.org/{p[0]}" for p in points],
            "point.x": [(p[2] + 0.5) / 64 for p in points],
            "point.y": [(p[1] + 0.5) / 48 for p in points],
            "label.id": [IDS[p[3]] for p in points],
            "label.name": [p[3] for p in points],
            "label.lineage_names": [CODES[p[3]] for p in points],
        }
    )
    squidle.to_csv(tmp_path / "squidle.csv", index=False)
    label_map = pd.DataFrame(
        {"label": list(CODES), "path": list(CODES.values()), "label_id": list(IDS.values())}
    )
    label_map.to_csv(tmp_path / "label_map.csv", index=False)
    return tmp_path / "label_map.csv"


@pytest.fixture(scope="module")
def round_trip(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("round_trip")
    points = _images(tmp_path / "images")
    label_map = _exports(tmp_path, points)
    import_points(
        tmp_path / "coralnet.csv", tmp_path / "images", tmp_path / "coralnet", label_map=label_map, size=16
    )
    manifest = tmp_path / "coralnet" / "manifest.csv"
    config = tiny_config(
        manifest, tmp_path / "run", "data.hierarchy=null", "train.epochs=3", "decision.policy=fixed"
    )
    train(config)
    return tmp_path, points, label_map


@pytest.mark.parametrize("tool", ["coralnet", "biigle", "squidle"])
def test_import_train_predict_export_reimport_gives_the_same_points_and_labels(round_trip, tool):
    tmp_path, points, label_map = round_trip
    out = tmp_path / tool
    if tool != "coralnet":  # the same points from the other tools, with the label tree as hierarchy
        import_points(tmp_path / f"{tool}.csv", tmp_path / "images", out, size=16)
    predict_images(tmp_path / "run" / "best.pt", out / "manifest.csv", out / "predictions.csv", workers=0)
    mapping = label_map if tool == "coralnet" else None
    summary = export_predictions(out / "predictions.csv", out / "export", label_map=mapping, top_k=3)
    assert summary["suggestions"]["tool"] == tool and summary["suggestions"]["points"] == len(points)
    suggestions = out / "export" / f"suggestions_{tool}.csv"
    back = read_points_export(suggestions)
    assert back.format == tool
    predictions = read_predictions(out / "predictions.csv")
    decided = pd.read_csv(suggestions, dtype=str, keep_default_na=False)
    # what should come back: per point, the tool's label of the decision's deepest node (or of its
    # nearest labelled ancestor), none where the rule abstained
    frame = predictions.frame
    keys = list(
        zip(frame["source_image"], frame["row"].astype(int), frame["column"].astype(int), strict=True)
    )
    column = {n: i for i, n in enumerate(predictions.nodes)}
    expected = {}
    for row, (key, entry) in enumerate(zip(keys, frame["predicted"], strict=True)):
        paths = [q for q in entry.split("|") if q in column]
        deepest = max(paths, key=lambda q: (q.count(" > "), frame.loc[row, f"p[{q}]"]), default="")
        while deepest and deepest not in (CODES.values() if tool == "coralnet" else column):
            deepest = deepest.rpartition(" > ")[0]
        expected[key] = deepest
    assert sorted(expected) == sorted((p[0], p[1], p[2]) for p in points)
    labelled = {key: path for key, path in expected.items() if path}
    assert summary["points_without_label"] == len(points) - len(labelled)
    assert len(labelled) >= len(points) // 2  # the model decides most points: the check has teeth
    if tool == "squidle":  # positions are shares: back to pixels when the image is opened
        counts = import_points(suggestions, tmp_path / "images", out / "again", size=16, max_bad_fraction=1)
        again = pd.read_csv(out / "again" / "manifest.csv")
        found = zip(again["source_image"], again["row"], again["column"], again["labels"], strict=True)
        assert counts["rows"] == len(labelled)
    else:
        paths, _ = map_labels(back.frame["label"], read_label_map(mapping) if mapping else None, None)
        found = zip(back.frame["image"], back.frame["row"], back.frame["column"], paths, strict=True)
        assert [p["reason"] for p in back.problems] == ["no label"] * (len(points) - len(labelled))
    assert {(image, row, column): path for image, row, column, path in found} == labelled
    if tool == "coralnet":
        assert decided["Machine suggestion 1"].isin(list(CODES)).all()
        confidence = decided["Machine confidence 1"].astype(int)
        assert (confidence >= decided["Machine confidence 2"].astype(int)).all()
    if tool == "biigle":  # the tool's label ids travel with the labels; the image's position made points
        assert set(decided.loc[decided["label_id"] != "", "label_id"]) <= set(IDS.values())
        assert summary["located_points"] == len(points)
        located = read_points(out / "export" / "points.gpkg", label_column="label")
        assert len(located) == len(points) and located["x"].between(147, 148).all()
        geojson = json.loads((out / "export" / "points.geojson").read_text())
        assert len(geojson["features"]) == len(points)
    assert summary["cover"]["mean_abs_error_points"] >= 0
    cover = pd.read_csv(out / "export" / "cover_all.csv")
    assert set(cover["node"]) == set(from_paths(PATHS).nodes)


def test_the_column_names_export_reads_are_the_ones_predict_writes():
    from seabed_hmc.annotations import predictions
    from seabed_hmc.engine import inference

    assert predictions.TRUE_LABELS == inference.TRUE_LABELS  # defined below engine, in both layers


def test_export_names_what_is_missing(tmp_path, capsys):
    bad = tmp_path / "not_predictions.csv"
    pd.DataFrame({"image": ["a.png"], "labels": ["A"]}).to_csv(bad, index=False)
    assert main(["export", str(bad), "--out", str(tmp_path / "out")]) == 2
    assert "is not a predict output" in capsys.readouterr().err
    good = tmp_path / "predictions.csv"
    pd.DataFrame(
        {"image": ["a.png"], "site": ["s"], "predicted": ["A"], "error": [""], "p[A]": [0.9]}
    ).to_csv(good, index=False)
    with pytest.raises(ExportError, match="no column 'transect' to group cover by; its columns: image, site"):
        export_predictions(good, tmp_path / "out", by=("transect",))
    with pytest.raises(ExportError, match="suggestions need points"):
        export_predictions(good, tmp_path / "out", tool="biigle")
    summary = export_predictions(good, tmp_path / "out", by=("site",))
    assert "suggestions" not in summary and summary["cover"]["files"]["site"] == "cover_by_site.csv"
    with pytest.raises(ExportError, match="has no split column to take the 'test' rows from"):
        export_predictions(good, tmp_path / "out", split="test")
    pd.read_csv(good).assign(split="train").to_csv(good, index=False)
    with pytest.raises(ExportError, match="has no 'test' rows"):
        export_predictions(good, tmp_path / "out", split="test")
    assert export_predictions(good, tmp_path / "out", split="TRAIN")["rows"] == 1
    command = ["export", str(good), "--out", str(tmp_path / "cli"), "--by", "site", "--split", "train"]
    assert main(command) == 0
    summary = json.loads((tmp_path / "cli" / "summary.json").read_text())
    assert summary["split"] == "train" and summary["cover"]["files"]["site"] == "cover_by_site.csv"
    assert (tmp_path / "cli" / "cover_by_site.png").stat().st_size > 1000


def test_an_abstention_goes_back_as_a_point_for_a_person_and_partial_depth_to_the_nearest_label(tmp_path):
    nodes = ["Biota", "Biota > Algae", "Biota > Algae > Kelp", "Substrate", "Substrate > Sand"]
    rows = [
        ("a.png", "5", "6", "abstain", [0.4, 0.3, 0.2, 0.3, 0.1]),
        ("a.png", "9", "6", "Biota > Algae", [0.9, 0.8, 0.4, 0.1, 0.1]),  # no code on Algae: Biota's
        ("b.png", "1", "2", "Substrate > Sand|Biota", [0.6, 0.2, 0.1, 0.9, 0.85]),
    ]
    frame = pd.DataFrame(
        [
            {"image": f"p{i}.png", "source_image": s, "row": r, "column": c, "predicted": d, "error": ""}
            | {f"p[{n}]": v for n, v in zip(nodes, p, strict=True)}
            for i, (s, r, c, d, p) in enumerate(rows)
        ]
    )
    frame.to_csv(tmp_path / "predictions.csv", index=False)
    label_map = tmp_path / "map.csv"
    codes = [("BIO", "Biota"), ("KELP", "Biota > Algae > Kelp"), ("SAND", "Substrate > Sand")]
    pd.DataFrame(codes, columns=["label", "path"]).to_csv(label_map, index=False)
    summary = export_predictions(tmp_path / "predictions.csv", tmp_path / "out", label_map=label_map, top_k=2)
    table = pd.read_csv(tmp_path / "out" / "suggestions_coralnet.csv", keep_default_na=False)
    assert table["Label"].tolist() == ["", "BIO", "SAND"] and summary["points_without_label"] == 1
    # exclusive scores: BIO 0.9 - max(KELP 0.4) = 0.5 on the second point
    assert table.loc[1, ["Machine suggestion 1", "Machine confidence 1"]].tolist() == ["BIO", 50]
    back = read_points_export(tmp_path / "out" / "suggestions_coralnet.csv")
    assert back.frame["label"].tolist() == ["BIO", "SAND"]
    assert [(p["row"], p["reason"]) for p in back.problems] == [(2, "no label")]
