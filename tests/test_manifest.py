"""Manifests and image folders: the example files, every error naming its row, the real CCR manifest."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from seabed_hmc.data import (
    ImageTable,
    ManifestError,
    ManifestLabelError,
    check_images,
    read_manifest,
)
from seabed_hmc.data.image_folders import scan_image_folder
from seabed_hmc.hierarchy import Hierarchy, LabelError, from_folder, from_paths, load_hierarchy
from tests.conftest import shared_data_path

EXAMPLES = Path(__file__).resolve().parents[1] / "data_manifests"
TREE = [
    "Biota > Algae > Kelp",
    "Biota > Algae > Red",
    "Biota > Sponges",
    "Substrate > Sand",
]


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


def manifest(tmp_path: Path, *rows: str, header: str = "image,labels,split,complete") -> Path:
    return write(tmp_path / "m.csv", "\n".join([header, *rows]) + "\n")


def node(table: ImageTable, name: str) -> int:
    return table.hierarchy.index(name)


# ------------------------------------------------------------------ the examples
def test_example_manifest_reads_against_the_example_hierarchy() -> None:
    hierarchy = load_hierarchy(EXAMPLES / "example_hierarchy.csv")
    table = read_manifest(EXAMPLES / "example_manifest.csv", hierarchy=hierarchy)
    frame = table.frame
    assert len(table) == 7 and table.hierarchy is hierarchy
    assert list(frame.columns) == [
        *("image", "labels", "split", "complete", "x", "y", "crs"),
        *("dive", "depth_m", "annotator"),
    ]
    assert frame["split"].tolist() == ["train", "train", "train", "val", "val", "test", "test"]
    assert frame["complete"].tolist() == [True, False, True, True, False, True, True]
    assert frame["image"].iloc[0] == str(EXAMPLES / "images" / "dive01" / "0001.jpg")
    assert frame["x"].iloc[0] == 512301.5 and math.isnan(frame["x"].iloc[6]) and frame["crs"].iloc[6] == ""
    assert frame["annotator"].iloc[6] == "CD, checked by AB" and frame["depth_m"].iloc[0] == "12.4"
    assert table.targets.shape == table.mask.shape == (7, len(hierarchy))
    assert table.targets.dtype == table.mask.dtype == torch.float32
    # row 2 is multi-label: kelp and boulder with all their ancestors, nothing else
    on = {hierarchy.nodes[i] for i in torch.nonzero(table.targets[0]).flatten().tolist()}
    assert on == {
        "Biota",
        "Biota > Macroalgae",
        "Biota > Macroalgae > Brown algae",
        "Biota > Macroalgae > Brown algae > Kelp",
        "Substrate",
        "Substrate > Consolidated (hard)",
        "Substrate > Consolidated (hard) > Boulder",
    }
    assert table.mask[0].all()
    # row 3 stops at red algae (incomplete): the kinds of red algae are unknown, brown algae a known 0
    red_kinds = hierarchy.descendants("Biota > Macroalgae > Red algae")
    assert table.mask[1, red_kinds].eq(0).all() and table.mask[1].sum() == len(hierarchy) - len(red_kinds)
    assert table.targets[1, hierarchy.index("Biota > Macroalgae > Brown algae")] == 0
    check = check_images(table.paths, workers=1)
    assert check.good.size == 0 and [reason for _, reason in check.problems] == ["file not found"] * 7


def test_example_manifest_builds_its_own_hierarchy_from_the_label_paths() -> None:
    table = read_manifest(EXAMPLES / "example_manifest.csv")
    full = load_hierarchy(EXAMPLES / "example_hierarchy.csv")
    assert set(table.hierarchy.nodes) < set(full.nodes)
    assert "Biota > Macroalgae > Brown algae > Fucus" not in table.hierarchy  # no row uses it
    assert table.hierarchy.roots == (0, table.hierarchy.index("Substrate"))


# ------------------------------------------------------------------ reading
def test_paths_are_relative_to_the_manifest_folder_or_root_and_labels_become_node_names(tmp_path) -> None:
    path = manifest(
        tmp_path,
        "a/1.jpg, Biota >Algae> Kelp | Substrate > Sand ,Train,",
        f"{tmp_path / 'b' / '2.jpg'},Biota > Sponges,,FALSE",
        header="image,labels,split,complete",
    )
    table = read_manifest(path, hierarchy=from_paths(TREE))
    assert table.paths == [str(tmp_path / "a" / "1.jpg"), str(tmp_path / "b" / "2.jpg")]
    assert table.frame["labels"].tolist() == ["Biota > Algae > Kelp|Substrate > Sand", "Biota > Sponges"]
    assert table.frame["split"].tolist() == ["train", ""] and table.frame["complete"].tolist() == [
        True,
        False,
    ]
    rooted = read_manifest(path, hierarchy=from_paths(TREE), root=tmp_path / "b")
    assert rooted.paths[0] == str(tmp_path / "b" / "a" / "1.jpg")


@pytest.mark.parametrize("image", ["../outside.jpg", "a/../../outside.jpg", "/elsewhere/x.jpg"])
def test_an_image_outside_the_root_is_rejected_with_its_row_unless_allowed(tmp_path, image) -> None:
    path = manifest(tmp_path, "ok.jpg,Biota", f"{image},Biota")
    with pytest.raises(ManifestError, match=r"row 3, column 'image'.*outside the root folder") as caught:
        read_manifest(path)
    assert (caught.value.row, caught.value.column, caught.value.path) == (3, "image", path)
    table = read_manifest(path, allow_outside_root=True)
    assert table.paths[1] == os.path.normpath(os.path.join(tmp_path, image))


def test_columns_mapping_reads_other_names_and_keeps_the_rest_as_text(tmp_path) -> None:
    path = manifest(
        tmp_path,
        "x.jpg,007,Biota > Sponges,val",
        header="path,code,hierarchy_path,split",
    )
    with pytest.raises(
        ManifestError, match=r"no 'image' column.*pass columns= to name the column .* \(perhaps image=path\)"
    ):
        read_manifest(path)
    table = read_manifest(path, columns={"image": "path", "labels": "hierarchy_path"})
    assert list(table.frame.columns) == ["image", "labels", "split", "complete", "code"]
    assert table.frame["code"].iloc[0] == "007"  # metadata is text, as written
    with pytest.raises(ManifestError, match=r"reads 'labels' from 'label_path'.*no such column"):
        read_manifest(path, columns={"image": "path", "labels": "label_path"})
    with pytest.raises(ValueError, match="columns= keys must be among"):
        read_manifest(path, columns={"picture": "path"})


def test_blank_rows_count_in_row_numbers_like_a_spreadsheet(tmp_path) -> None:
    path = manifest(tmp_path, "a.jpg,Biota", "", "", "b.jpg,Biota,,maybe")
    with pytest.raises(ManifestError, match=r"m\.csv, row 5, column 'complete': 'maybe' is not true/false"):
        read_manifest(path)


# ------------------------------------------------------------------ errors, each naming file, row, column
@pytest.mark.parametrize(
    ("rows", "header", "pattern", "row", "column"),
    [
        (["a.jpg,Biota", "b.jpg,"], "image,labels", r"row 3, column 'labels': no label", 3, "labels"),
        (["a.jpg, | ,"], "image,labels,split", r"row 2, column 'labels': no label", 2, "labels"),
        ([",Biota"], "image,labels", r"row 2, column 'image': the image path is empty", 2, "image"),
        (["a.jpg,Biota,trian"], "image,labels,split", r"row 2, column 'split': split 'trian'", 2, "split"),
        (["a.jpg,Biota,,2"], "image,labels,split,complete", r"row 2, column 'complete': '2'", 2, "complete"),
        (
            ["a.jpg,Biota,1.5e3,north"],
            "image,labels,x,y",
            r"row 2, column 'y': 'north' is not a number",
            2,
            "y",
        ),
        (["a.jpg,Biota > > Kelp"], "image,labels", r"row 2, column 'labels': .*empty level", 2, "labels"),
        (["a.jpg,Biota,extra"], "image,labels", r"row 2: 3 cells but the header has 2", 2, None),
        (["a.jpg,Biota,x"], "image,labels,", r"column 3 has no name.*row 2", 2, None),
        (["a.jpg,Biota"], "image,labels,image", r"repeats column\(s\) \['image'\]", None, None),
        (["a.jpg"], "image", r"no 'labels' column; its header \(row 1\) is \['image'\]", 1, "labels"),
    ],
)
def test_manifest_errors_name_the_file_row_and_column(tmp_path, rows, header, pattern, row, column) -> None:
    path = manifest(tmp_path, *rows, header=header)
    with pytest.raises(ManifestError, match=pattern) as caught:
        read_manifest(path)
    assert str(path) in str(caught.value)
    assert (caught.value.row, caught.value.column) == (row, column)


def test_an_unknown_label_is_a_label_error_naming_file_row_and_close_names(tmp_path) -> None:
    path = manifest(tmp_path, "a.jpg,Biota > Algae > Kelp", "b.jpg,Biota > Algae > Kelpp|Substrate")
    with pytest.raises(
        ManifestLabelError, match=r"row 3, column 'labels': label 'Biota > Algae > Kelpp'"
    ) as caught:
        read_manifest(path, hierarchy=from_paths(TREE))
    assert isinstance(caught.value, LabelError) and isinstance(caught.value, ValueError)
    assert "did you mean ['Biota > Algae > Kelp'" in str(caught.value) and str(path) in str(caught.value)


@pytest.mark.parametrize(("content", "pattern"), [("", "is empty"), ("image,labels\n\n", "no image rows")])
def test_an_empty_manifest_is_an_error(tmp_path, content, pattern) -> None:
    with pytest.raises(ManifestError, match=pattern):
        read_manifest(write(tmp_path / "m.csv", content))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_manifest(tmp_path / "absent.csv")


def test_text_that_is_not_utf8_is_reported_with_its_line_and_read_with_an_encoding(tmp_path) -> None:
    path = write(
        tmp_path / "m.csv", "image,labels,site\na.jpg,Biota,Baie des Chaleurs\nb.jpg,Biota,Île\n", "cp1252"
    )
    with pytest.raises(ManifestError, match=r"not utf-8-sig text: byte 0xce on line 3.*encoding='cp1252'"):
        read_manifest(path)
    assert read_manifest(path, encoding="cp1252").frame["site"].iloc[1] == "Île"
    with_bom = write(tmp_path / "bom.csv", "\ufeffimage,labels\na.jpg,Biota\n")
    assert read_manifest(with_bom).frame.columns[0] == "image"


def test_a_duplicated_image_is_an_error_or_merged(tmp_path) -> None:
    path = manifest(
        tmp_path,
        "a.jpg,Biota > Algae,train,false",
        "b.jpg,Biota > Sponges,train,",
        "./x/../a.jpg,Substrate > Sand,train,true",
    )
    with pytest.raises(ManifestError, match=r"rows 2, 4, column 'image'.*'Biota > Algae\|Substrate > Sand'"):
        read_manifest(path)
    table = read_manifest(path, hierarchy=from_paths(TREE), on_duplicate="merge")
    assert len(table) == 2 and table.frame["labels"].iloc[0] == "Biota > Algae|Substrate > Sand"
    assert not table.frame["complete"].iloc[0]  # one row incomplete: the merged row is incomplete
    kelp = table.hierarchy.index("Biota > Algae > Kelp")
    assert table.mask[0, kelp] == 0 and table.targets[0, table.hierarchy.index("Substrate > Sand")] == 1
    conflict = manifest(tmp_path, "a.jpg,Biota,train", "a.jpg,Substrate,test")
    with pytest.raises(ManifestError, match=r"rows 2, 3, column 'split'.*one split"):
        read_manifest(conflict, on_duplicate="merge")


# ------------------------------------------------------------------ the table
def test_subset_and_select_keep_frame_targets_and_mask_aligned(tmp_path) -> None:
    path = manifest(
        tmp_path,
        "a.jpg,Biota > Algae > Kelp,train,",
        "b.jpg,Substrate > Sand,test,",
        "c.jpg,Biota > Sponges,train,",
        "d.jpg,Biota > Algae,,no",
    )
    table = read_manifest(path)
    train = table.subset("train")
    assert len(train) == 2 and train.frame["image"].str.endswith(("a.jpg", "c.jpg")).all()
    assert torch.equal(train.targets, table.targets[[0, 2]]) and torch.equal(train.mask, table.mask[[0, 2]])
    assert train.frame.index.tolist() == [0, 1] and train.hierarchy is table.hierarchy
    assert len(table.subset("")) == 1
    picked = table.select(np.array([3, 1]))
    assert picked.frame["labels"].tolist() == ["Biota > Algae", "Substrate > Sand"]
    assert torch.equal(picked.mask, table.mask[[3, 1]])
    assert len(table.select([])) == 0 and len(table.select(np.array([True, False, False, False]))) == 1
    with pytest.raises(IndexError):
        table.select([4])
    with pytest.raises(ValueError, match="split must be one of"):
        table.subset("validation")
    assert "4 images" in repr(table)


# ------------------------------------------------------------------ image folders
def test_folder_scan_labels_images_by_their_folder_path_and_reports_root_images(tmp_path) -> None:
    for name in [
        "Biota/Algae/Kelp/k1.jpg",
        "Biota/Algae/Kelp/k2.PNG",
        "Biota/Algae/a1.jpg",
        "Substrate/Sand/s1.tif",
        "Substrate/Sand/notes.txt",
        "Substrate/.cache/c.jpg",
        "stray.jpg",
    ]:
        write(tmp_path / name, "x")
    table = scan_image_folder(tmp_path)
    assert table.hierarchy == from_folder(tmp_path)
    assert table.frame["labels"].tolist() == [  # sorted by name at each level: "Kelp" before "a1.jpg"
        "Biota > Algae > Kelp",
        "Biota > Algae > Kelp",
        "Biota > Algae",
        "Substrate > Sand",
    ]
    assert table.paths[2] == str(tmp_path / "Biota" / "Algae" / "a1.jpg")
    assert table.problems == [(str(tmp_path / "stray.jpg"), table.problems[0][1])]
    assert "directly in the root folder" in table.problems[0][1]
    # the image in the inner folder Algae is incomplete: Kelp unknown for it, known for the others
    kelp = table.hierarchy.index("Biota > Algae > Kelp")
    assert table.frame["complete"].tolist() == [True, True, False, True]
    assert table.mask[:, kelp].tolist() == [1, 1, 0, 1]
    assert scan_image_folder(tmp_path, inner_folders_complete=True).mask.all()
    assert len(table.select([0, 1]).problems) == 1


def test_folder_scan_with_a_given_hierarchy_rejects_a_folder_it_lacks(tmp_path) -> None:
    write(tmp_path / "Biota" / "Algae" / "Kelp" / "k.jpg", "x")
    write(tmp_path / "Biota" / "Corals" / "c.jpg", "x")
    hierarchy = Hierarchy.from_paths(TREE)
    with pytest.raises(ManifestLabelError, match=r"folder 'Biota/Corals' .* is not a node"):
        scan_image_folder(tmp_path, hierarchy=hierarchy)
    with pytest.raises(ManifestError, match="no images"):
        scan_image_folder(tmp_path / "Biota" / "Algae" / "Kelp")  # its image lies in its root


# ------------------------------------------------------------------ the real CCR benthic manifest
def test_the_ccr_benthic_manifest_and_folder_load() -> None:
    folder = shared_data_path("ccr_benthic")
    table = read_manifest(folder / "manifest.csv", columns={"image": "path", "labels": "hierarchy_path"})
    assert len(table) == 2011
    assert table.frame["split"].value_counts().to_dict() == {"train": 1405, "val": 303, "test": 303}
    assert list(table.frame.columns) == [
        *("image", "labels", "split", "complete"),
        *("short_code", "long_code", "n_in_source", "source_path"),
    ]
    hierarchy = table.hierarchy
    assert len(hierarchy) == 43 and len(hierarchy.leaves) == 25 and int(hierarchy.depth.max()) == 4
    assert sorted(hierarchy.nodes[r] for r in hierarchy.roots) == [
        "Anthropogenic",
        "Biota",
        "Substrate",
        "Unknown",
    ]
    assert table.frame["labels"].nunique() == 25 and table.frame["complete"].all()
    assert table.targets.sum(dim=1).min() >= 2 and table.mask.all()
    assert all(os.path.isfile(p) for p in table.paths[::50])
    scanned = scan_image_folder(folder / "images")
    assert len(scanned) == 2011 and len(scanned.hierarchy) == 25 and not scanned.problems
