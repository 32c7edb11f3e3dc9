"""Point annotations from annotation tools (CoralNet exports) into patches and a manifest train reads."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from seabed_hmc.annotations.label_map import LabelMapError, read_label_map
from seabed_hmc.annotations.patches import PointImportError, cut_patch, import_points
from seabed_hmc.annotations.points import AnnotationFormatError, read_points_export
from seabed_hmc.cli import main
from seabed_hmc.data.manifest import read_manifest
from seabed_hmc.hierarchy import from_paths

PATHS = ["Biota > Algae > Kelp", "Biota > Algae", "Substrate > Sand"]


def images(folder, sizes=(("a.png", 40, 30), ("b.png", 20, 16))):
    """Images whose pixel (row, column) holds (row, column, image number): a patch shows its origin."""
    folder.mkdir(parents=True, exist_ok=True)
    for number, (name, width, height) in enumerate(sizes):
        rows, columns = np.mgrid[0:height, 0:width]
        pixels = np.stack([rows, columns, np.full_like(rows, number + 1)], axis=-1).astype(np.uint8)
        Image.fromarray(pixels).save(folder / name)
    return folder


def coralnet_export(path, rows):
    pd.DataFrame(rows, columns=["Name", "Row", "Column", "Label", "Annotator"]).to_csv(path, index=False)
    return path


def label_map(path, rows=(("KELP", PATHS[0]), ("ALG", PATHS[1]), ("SAND", PATHS[2]))):
    pd.DataFrame(list(rows), columns=["label", "path"]).to_csv(path, index=False)
    return path


def test_a_coralnet_export_becomes_patches_a_manifest_and_its_problems(tmp_path):
    folder = images(tmp_path / "images")
    export = coralnet_export(
        tmp_path / "annotations.csv",
        [
            ["a.png", 10, 12, "KELP", "ann"],
            ["a.png", 0, 0, "SAND", "ann"],  # a corner: the patch is shifted inward
            ["a.png", 10, 12, "ALG", "ann"],  # the same point again
            ["a.png", 35, 5, "SAND", "ann"],  # row 35 of a 30-row image
            ["a.png", "x1", 5, "SAND", "ann"],  # not a pixel position
            ["b.png", 8, 10, "ALG", "robot"],
            ["b.png", 3, 3, "CORAL", "ann"],  # not in the label map
            ["gone.png", 1, 1, "SAND", "ann"],  # no such image
        ],
    )
    counts = import_points(
        export,
        folder,
        tmp_path / "out",
        label_map=label_map(tmp_path / "map.csv"),
        size=8,
        max_bad_fraction=1,
    )
    assert counts == {
        "format": "coralnet",
        "points": 8,
        "rows": 3,
        "images": 3,
        "problems": 5,
        "unmapped_labels": {"CORAL": 1},
        "split": {"from": "images shuffled with seed 0", "train": 3},  # 2 images: too few to split
    }
    manifest = pd.read_csv(tmp_path / "out" / "manifest.csv")
    assert manifest["labels"].tolist() == [PATHS[0], PATHS[2], PATHS[1]]
    assert manifest[["source_image", "row", "column", "label", "Annotator"]].values.tolist() == [
        ["a.png", 10, 12, "KELP", "ann"],
        ["a.png", 0, 0, "SAND", "ann"],
        ["b.png", 8, 10, "ALG", "robot"],
    ]
    first = np.asarray(Image.open(tmp_path / "out" / manifest["image"][0]))
    assert first.shape == (8, 8, 3) and tuple(first[4, 4]) == (10, 12, 1)  # centred on the point
    corner = np.asarray(Image.open(tmp_path / "out" / manifest["image"][1]))
    assert tuple(corner[0, 0]) == (0, 0, 1)  # shifted inward: the image's own corner, no padding
    reasons = pd.read_csv(tmp_path / "out" / "problems.csv")["reason"].tolist()
    assert any("duplicate point at row 10, column 12" in r for r in reasons)
    assert any("row 35, column 5 is outside the 40 x 30 image" in r for r in reasons)
    assert any("row 'x1' is not a pixel position" in r for r in reasons)
    assert any("label 'CORAL' is not in the label map" in r for r in reasons)
    assert any("gone.png does not exist" in r for r in reasons)
    template = pd.read_csv(tmp_path / "out" / "label_map_template.csv", keep_default_na=False)
    assert template.iloc[-1].tolist() == ["CORAL", "1", ""] and len(template) == 4
    # the manifest is what train reads
    table = read_manifest(tmp_path / "out" / "manifest.csv")
    assert len(table.frame) == 3 and "Biota > Algae > Kelp" in table.hierarchy


def test_too_many_bad_points_stop_the_import_after_writing_the_reasons(tmp_path):
    folder = images(tmp_path / "images")
    rows = [["a.png", 5, 5, "SAND", "ann"], ["a.png", 99, 5, "SAND", "ann"]]
    export = coralnet_export(tmp_path / "annotations.csv", rows)
    with pytest.raises(PointImportError, match=r"1 of 2 points.*max_bad_fraction 0.05.*problems.csv"):
        import_points(export, folder, tmp_path / "out", size=4)
    assert "outside" in (tmp_path / "out" / "problems.csv").read_text()


def test_one_row_per_image_holds_its_points_labels(tmp_path):
    folder = images(tmp_path / "images")
    rows = [["a.png", 1, 1, "KELP", ""], ["a.png", 2, 2, "SAND", ""], ["a.png", 3, 3, "KELP", ""]]
    export = coralnet_export(tmp_path / "annotations.csv", rows)
    import_points(export, folder, tmp_path / "out", label_map=label_map(tmp_path / "map.csv"), unit="image")
    manifest = pd.read_csv(tmp_path / "out" / "manifest.csv")
    assert manifest.values.tolist() == [["images/a.png", f"{PATHS[0]}|{PATHS[2]}", 3, "train"]]
    assert (tmp_path / "out" / "images" / "a.png").read_bytes() == (folder / "a.png").read_bytes()


@pytest.mark.parametrize("edge", ["shift", "pad", "skip"])
def test_patches_match_a_brute_force_cut(edge):
    """Every policy against a direct construction: pad = the image padded with zeros, then the window;
    shift = the window moved inside; skip = None exactly when the window crosses the border."""
    rng = np.random.default_rng(0)
    for _ in range(200):
        height, width, size = rng.integers(3, 20), rng.integers(3, 20), int(rng.integers(1, 12))
        pixels = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
        row, column = int(rng.integers(0, height)), int(rng.integers(0, width))
        top, left = row - size // 2, column - size // 2
        crosses = top < 0 or left < 0 or top + size > height or left + size > width
        patch = cut_patch(pixels, row, column, size, edge)
        padded = np.pad(pixels, ((size, size), (size, size), (0, 0)))
        window = padded[top + size : top + 2 * size, left + size : left + 2 * size]
        if edge == "skip":
            assert (patch is None) == crosses and (crosses or np.array_equal(patch, window))
        elif edge == "pad" or not crosses or size > height or size > width:
            assert np.array_equal(patch, window)
        else:
            t, l = min(max(top, 0), height - size), min(max(left, 0), width - size)
            assert np.array_equal(patch, pixels[t : t + size, l : l + size])
            assert t <= row < t + size and l <= column < l + size  # the point stays in its patch


def test_label_map_errors_name_the_file_and_row(tmp_path):
    hierarchy = from_paths(PATHS)
    wrong = label_map(tmp_path / "wrong.csv", [("KELP", PATHS[0]), ("X", "Biota > Corals")])
    with pytest.raises(LabelMapError, match=r"wrong.csv row 3: 'Biota > Corals' .* not a node"):
        read_label_map(wrong, hierarchy)
    twice = label_map(tmp_path / "twice.csv", [("KELP", PATHS[0]), ("KELP", PATHS[1])])
    with pytest.raises(LabelMapError, match=r"twice.csv rows 2 and 3: label 'KELP' maps to both"):
        read_label_map(twice)
    partial = label_map(tmp_path / "partial.csv", [("KELP", PATHS[0]), ("SAND", "")])
    assert read_label_map(partial, hierarchy) == {"KELP": PATHS[0]}  # an empty path leaves it unmapped


def test_exports_that_are_not_coralnet_are_refused_with_the_columns_named(tmp_path):
    other = tmp_path / "other.csv"
    other.write_text("file,x,y,class\na.png,1,2,KELP\n")
    with pytest.raises(AnnotationFormatError, match="cannot tell the annotation tool.*give --format"):
        read_points_export(other)
    with pytest.raises(AnnotationFormatError, match="missing Name, Row, Column, Label"):
        read_points_export(other, "coralnet")


def test_cli_import_points(tmp_path, capsys):
    folder = images(tmp_path / "images")
    export = coralnet_export(tmp_path / "annotations.csv", [["a.png", 5, 5, "Substrate > Sand", "ann"]])
    out = tmp_path / "out"
    assert main(["import-points", "--export", str(export), "--images", str(folder), "--out", str(out)]) == 0
    assert '"rows": 1' in capsys.readouterr().out
    assert pd.read_csv(out / "manifest.csv")["labels"].tolist() == ["Substrate > Sand"]
    code = main(
        ["import-points", "--export", str(export), "--images", str(tmp_path / "nowhere"), "--out", str(out)]
    )
    assert code == 2 and "image folder" in capsys.readouterr().err


def cpc_file(path, image, width, height, points, lines_after=('""',) * 3):
    """A .cpc file as CPCe 4 writes one: positions in 1/15 pixel, the image on the annotator's drive."""
    rows = [f'"C:\\CPCe\\codes.txt","{image}",{width * 15},{height * 15},14400,10800']
    rows += [f"0,{height * 15}", f"{width * 15},{height * 15}", f"{width * 15},0", "0,0", str(len(points))]
    rows += [f"{column * 15},{row * 15}" for row, column, _ in points]
    rows += [f'"{n + 1}","{code}","Notes",""' for n, (_, _, code) in enumerate(points)]
    path.write_text("\r\n".join([*rows, *lines_after]) + "\r\n", encoding="latin-1")
    return path


def test_cpce_files_are_read_with_their_drive_paths_dropped_and_sizes_checked(tmp_path):
    folder = images(tmp_path / "images")
    cpcs = tmp_path / "cpc"
    cpcs.mkdir()
    cpc_file(cpcs / "a.cpc", r"D:\Survey 2019\transect 1\a.png", 40, 30, [(10, 12, "KELP"), (20, 5, "SAND")])
    cpc_file(cpcs / "b.cpc", r"E:\b.png", 30, 16, [(8, 10, "ALG")])  # b.png is 20 pixels wide, not 30
    (cpcs / "broken.cpc").write_text('"c","d",0,0,0,0\r\n0,0\r\n0,0\r\n0,0\r\n0,0\r\nabc\r\n')
    table = read_points_export(cpcs)
    assert table.format == "cpce" and table.frame[["image", "row", "column", "label"]].values.tolist() == [
        ["a.png", 10, 12, "KELP"],
        ["a.png", 20, 5, "SAND"],
        ["b.png", 8, 10, "ALG"],
    ]
    assert "broken.cpc line 6: 'abc' should be the number of points" in table.problems[0]["reason"]
    counts = import_points(cpcs, folder, tmp_path / "out", label_map=label_map(tmp_path / "m.csv"), size=6,
                           max_bad_fraction=1)  # fmt: skip
    assert counts["rows"] == 2 and counts["points"] == 4
    patch = np.asarray(
        Image.open(tmp_path / "out" / pd.read_csv(tmp_path / "out" / "manifest.csv")["image"][0])
    )
    assert tuple(patch[3, 3]) == (10, 12, 1)
    reasons = " ".join(pd.read_csv(tmp_path / "out" / "problems.csv")["reason"])
    assert "the export says the image is 30 x 16 pixels" in reasons and "is 20 x 16" in reasons


def test_a_biigle_report_gives_points_circle_and_rectangle_centres_and_its_label_tree(tmp_path):
    folder = images(tmp_path / "images")
    columns = [
        "label_id",
        "label_name",
        "label_hierarchy",
        "filename",
        "image_latitude",
        "shape_name",
        "points",
    ]
    rows = [
        [1, "Kelp", "Biota > Algae > Kelp", "a.png", "-33.9", "Point", "[12, 10]"],
        [2, "Sand", "Substrate > Sand", "a.png", "-33.9", "Circle", "[5.4, 20.2, 3]"],
        [2, "Sand", "Substrate > Sand", "b.png", "", "Rectangle", "[2, 2, 8, 2, 8, 6, 2, 6]"],
        [1, "Kelp", "Biota > Algae > Kelp", "b.png", "", "Polygon", "[1, 1, 5, 1, 3, 4]"],
        [1, "Kelp", "Biota > Algae > Kelp", "b.png", "", "Point", "not json"],
    ]
    report = tmp_path / "report.csv"
    pd.DataFrame(rows, columns=columns).to_csv(report, index=False)
    table = read_points_export(report)
    assert table.format == "biigle"
    assert table.frame[["image", "row", "column", "label"]].values.tolist() == [
        ["a.png", 10, 12, "Biota > Algae > Kelp"],
        ["a.png", 20, 5, "Substrate > Sand"],
        ["b.png", 4, 5, "Substrate > Sand"],
    ]
    reasons = [p["reason"] for p in table.problems]
    assert "a polygon annotation (only points, circles and rectangles are used)" in reasons[0]
    assert "are not a JSON list of numbers" in reasons[1]
    # without a label map the label tree's paths are the labels, and the hierarchy
    import_points(report, folder, tmp_path / "out", size=4, max_bad_fraction=1)
    manifest = read_manifest(tmp_path / "out" / "manifest.csv")
    assert str(manifest.frame["image_latitude"][0]) == "-33.9" and "Biota > Algae" in manifest.hierarchy


def test_cover_counts_each_point_for_its_nodes_and_their_ancestors_against_brute_force():
    from seabed_hmc.annotations import cover
    from seabed_hmc.decisions import ABSTAIN

    assert cover.ABSTAIN == ABSTAIN  # the same word predict writes
    hierarchy = from_paths(["A > B > C", "A > B > D", "A > E", "F > G"])
    rng = np.random.default_rng(1)
    names = list(hierarchy.nodes)
    points = ["|".join(rng.choice(names, rng.integers(1, 3), replace=False)) for _ in range(60)]
    points += ["abstain", ""]
    got = cover.node_cover(points, hierarchy)
    for index, node in enumerate(names):
        on = 0
        for point in points:
            closed = set()
            for label in filter(None, point.split("|")) if point != "abstain" else []:
                parts = label.split(" > ")
                closed |= {" > ".join(parts[: k + 1]) for k in range(len(parts))}
            on += node in closed
        assert got[index] == pytest.approx(on / len(points))
    table = cover.cover_error(points, ["A > B > C"] * len(points), hierarchy)
    row = table.set_index("node").loc["A > B > C"]
    assert row.predicted_percent == 100 and row.error_points == pytest.approx(100 - row.annotated_percent)
    with pytest.raises(ValueError, match="62 annotated points but 1 predicted"):
        cover.cover_error(points, ["A"], hierarchy)


def test_a_squidle_export_gives_pixels_from_shares_of_the_image_and_its_lineages(tmp_path):
    folder = images(tmp_path / "images")  # a.png is 40 x 30, b.png 20 x 16
    columns = ["label.id", "label.name", "label.lineage_names", "point.x", "point.y", "point.media.key"]
    columns += ["point.media.path_best", "point.pose.lat", "point.pose.lon"]
    url = "https://example.org/media/b.png?size=full"
    rows = [
        [7, "Kelp", "Biota > Algae > Kelp", "0.3", "0.5", "a.png", "", "-42.1", "147.9"],
        [9, "Sand", "Substrate > Sand", "1.0", "1", "a.png", "", "-42.1", "147.9"],  # the far corner
        [9, "Sand", "", "0.5", "0.25", "b", url, "-42.2", "147.8"],  # no lineage: the name; key + .png
        [7, "Kelp", "Biota > Algae > Kelp", "1.5", "0.2", "b", url, "", ""],  # x past the image
        [7, "Kelp", "Biota > Algae > Kelp", "", "0.2", "b", url, "", ""],
    ]
    export = tmp_path / "squidle.csv"
    pd.DataFrame(rows, columns=columns).to_csv(export, index=False)
    table = read_points_export(export)
    assert table.format == "squidle" and table.fractions
    assert table.frame[["image", "label"]].values.tolist() == [
        ["a.png", "Biota > Algae > Kelp"],
        ["a.png", "Substrate > Sand"],
        ["b.png", "Sand"],
    ]
    assert [p["row"] for p in table.problems] == [5, 6]
    assert "point.x '1.5' is not a share of the image" in table.problems[0]["reason"]
    out = tmp_path / "out"
    mapping = label_map(
        tmp_path / "map.csv", [("Biota > Algae > Kelp", PATHS[0]), ("Substrate > Sand", PATHS[2])]
    )
    pd.DataFrame([["Sand", PATHS[2]]], columns=["label", "path"]).to_csv(
        mapping, mode="a", header=False, index=False
    )
    counts = import_points(export, folder, out, label_map=mapping, size=4, max_bad_fraction=1)
    assert counts["rows"] == 3 and counts["problems"] == 2
    manifest = pd.read_csv(out / "manifest.csv")
    # floor(share * size), the far edge clamped to the last pixel
    assert manifest[["source_image", "row", "column"]].values.tolist() == [
        ["a.png", 15, 12],
        ["a.png", 29, 39],
        ["b.png", 4, 10],
    ]
    assert manifest["point.pose.lat"].tolist() == [-42.1, -42.1, -42.2]
    assert manifest["x_fraction"].tolist() == [0.3, 1.0, 0.5]
    patch = np.asarray(Image.open(out / manifest["image"][0]))
    assert tuple(patch[2, 2]) == (15, 12, 1)


def test_the_split_keeps_each_images_points_together_or_takes_the_exports_own(tmp_path):
    sizes = [(f"i{k}.png", 20, 16) for k in range(10)]
    folder = images(tmp_path / "images", sizes)
    rows = [[name, row, 5, "SAND", "ann"] for name, _, _ in sizes for row in (3, 8, 12)]
    export = coralnet_export(tmp_path / "annotations.csv", rows)
    mapping = label_map(tmp_path / "map.csv")
    counts = import_points(
        export, folder, tmp_path / "out", label_map=mapping, size=4, test_fraction=0.2, seed=3
    )
    manifest = pd.read_csv(tmp_path / "out" / "manifest.csv")
    per_image = manifest.groupby("source_image")["split"].nunique()
    assert (per_image == 1).all()  # no image on two sides
    images_in = manifest.drop_duplicates("source_image")["split"].value_counts().to_dict()
    assert images_in == {"train": 6, "val": 2, "test": 2}  # round(0.15 * 10) = 2, 0.2 * 10 = 2
    assert counts["split"] == {"from": "images shuffled with seed 3", "test": 6, "train": 18, "val": 6}
    # the export's own split column wins
    pd.read_csv(export).assign(split=["train", "val", "test"] * 10).to_csv(export, index=False)
    counts = import_points(export, folder, tmp_path / "own", label_map=mapping, size=4)
    assert counts["split"] == {"from": "the export's split column", "test": 10, "train": 10, "val": 10}
    with pytest.raises(ValueError, match="leave some images for training"):
        import_points(export, folder, tmp_path / "x", label_map=mapping, val_fraction=0.5, test_fraction=0.5)


def test_a_biigle_label_tree_export_is_the_hierarchy_its_report_is_checked_against(tmp_path):
    from seabed_hmc.hierarchy import load_hierarchy

    tree = tmp_path / "label_tree.csv"  # BIIGLE's label-tree export: id, name, parent_id, ...
    pd.DataFrame(
        [[1, "Biota", "", "00ff00", 7], [2, "Algae", 1, "00aa00", 7], [3, "Kelp", 2, "008800", 7],
         [4, "Substrate", "", "888888", 7], [5, "Sand", 4, "cccccc", 7]],
        columns=["id", "name", "parent_id", "color", "label_tree_id"],
    ).to_csv(tree, index=False)  # fmt: skip
    hierarchy = load_hierarchy(tree)
    assert set(hierarchy.nodes) == {"Biota", "Biota > Algae", PATHS[0], "Substrate", PATHS[2]}
    report = tmp_path / "report.csv"
    rows = [
        ["Kelp", PATHS[0], "a.png", "Point", "[12, 10]"],
        ["Coral", "Biota > Coral", "a.png", "Point", "[5, 5]"],  # not in the tree
    ]
    pd.DataFrame(rows, columns=["label_name", "label_hierarchy", "filename", "shape_name", "points"]).to_csv(
        report, index=False
    )
    counts = import_points(report, images(tmp_path / "images"), tmp_path / "out", hierarchy=hierarchy, size=4,
                           max_bad_fraction=1)  # fmt: skip
    assert counts["rows"] == 1 and counts["unmapped_labels"] == {"Biota > Coral": 1}
