"""Hierarchy loaders: synthetic files for behaviour and errors, the real CATAMI and HMC files for counts."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from seabed_hmc.hierarchy import (
    GO_ROOTS,
    Hierarchy,
    HierarchyError,
    from_arff,
    from_catami_json,
    from_edges,
    from_folder,
    from_parent_table,
    from_path_file,
    from_paths,
    load_hierarchy,
    loaders,
)
from tests.conftest import shared_data_path


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# ------------------------------------------------------------------ attachment
@pytest.mark.parametrize(
    ("attribute", "function"),
    [
        ("from_paths", from_paths),
        ("from_path_file", from_path_file),
        ("from_edges", from_edges),
        ("from_parent_table", from_parent_table),
        ("from_catami_json", from_catami_json),
        ("from_folder", from_folder),
        ("from_arff", from_arff),
        ("load", load_hierarchy),
    ],
)
def test_loaders_are_static_methods_of_hierarchy_with_their_own_signature(attribute, function) -> None:
    method = getattr(Hierarchy, attribute)
    assert method is function is getattr(loaders, function.__name__)
    assert inspect.signature(method) == inspect.signature(function)
    assert method.__doc__


# ------------------------------------------------------------------ from_paths
def test_every_prefix_becomes_a_node_named_by_its_full_path() -> None:
    h = from_paths(
        [
            "[BIOTA] > Biota > Sponges > Massive",
            "[BIOTA] > Biota > Cnidaria > Corals > Massive",
            "[BIOTA] > Biota > Sponges",  # listed after its child: no duplicate, no change
        ]
    )
    assert h.nodes == (
        "[BIOTA]",
        "[BIOTA] > Biota",
        "[BIOTA] > Biota > Sponges",
        "[BIOTA] > Biota > Sponges > Massive",
        "[BIOTA] > Biota > Cnidaria",
        "[BIOTA] > Biota > Cnidaria > Corals",
        "[BIOTA] > Biota > Cnidaria > Corals > Massive",
    )
    assert h.nodes[h.parents[h.index("[BIOTA] > Biota > Cnidaria > Corals > Massive")][0]] == (
        "[BIOTA] > Biota > Cnidaria > Corals"
    )
    assert h.is_tree and h.excluded == ("[BIOTA]",)  # the core's default: a single root
    assert h.separator == " > "


def test_whitespace_trailing_commas_and_blank_rows_are_tolerated() -> None:
    h = from_paths(["  A > B  >  C ,", "", "   ", ",", "A > D,,", None, "X"])
    assert h.nodes == ("A", "A > B", "A > B > C", "A > D", "X")
    assert h.excluded == ()


def test_names_may_hold_the_bare_separator_character() -> None:
    h = from_paths(["[RELIEF] > High > High (>3m)", "[RELIEF] > Low (<1m)"])
    assert "[RELIEF] > High > High (>3m)" in h and h.depth[h.index("[RELIEF] > High > High (>3m)")] == 2


def test_other_separators() -> None:
    h = from_paths(["01/02/03", "01/04"], sep="/")
    assert h.nodes == ("01", "01/02", "01/02/03", "01/04")
    assert h.short_name("01/02/03") == "03"


def test_duplicate_path_names_both_rows_and_the_way_out() -> None:
    rows = ["A > B", "A > C", "A > B"]
    with pytest.raises(HierarchyError) as caught:
        from_paths(rows)
    message = str(caught.value)
    assert "'A > B'" in message and "rows 1 and 3" in message and "on_duplicate='ignore'" in message
    assert from_paths(rows, on_duplicate="ignore").nodes == ("A", "A > B", "A > C")
    with pytest.raises(ValueError, match="on_duplicate must be one of"):
        from_paths(rows, on_duplicate="skip")


@pytest.mark.parametrize("bad", ["A >  > B", "A > > B", " > A", "A > ", "A >"])
def test_empty_level_names_the_row(bad: str) -> None:
    with pytest.raises(HierarchyError, match=r"row 2: path .* has an empty level"):
        from_paths(["A", bad])


def test_empty_input_is_an_error() -> None:
    for empty in ([], ["", " ", ","]):
        with pytest.raises(HierarchyError, match="no paths"):
            from_paths(empty)
    with pytest.raises(TypeError, match="not one string"):
        from_paths("A > B")


def test_excluded_and_source_pass_through() -> None:
    h = from_paths(["A > B", "C"], excluded=["A"], source="list")
    assert h.excluded == ("A",) and h.source == "list"
    with pytest.raises(HierarchyError, match=r"excluded node\(s\) \['B'\] are not in the hierarchy in list"):
        from_paths(["A > B"], excluded=["B"], source="list")


# ------------------------------------------------------------------ from_path_file
def test_path_file_with_header_and_trailing_commas(tmp_path: Path) -> None:
    file = write(tmp_path / "scheme.csv", "catami\nA > B\nA > C,\n\nD > E,\n")
    h = from_path_file(file)
    assert h.nodes == ("A", "A > B", "A > C", "D", "D > E")
    assert h.source == str(file)


def test_path_file_without_header_and_quoted_commas(tmp_path: Path) -> None:
    file = write(tmp_path / "paths.txt", 'A > B\n"A > C, with comma"\n')
    assert from_path_file(file).nodes == ("A", "A > B", "A > C, with comma")
    flat = write(tmp_path / "flat.txt", "kelp\nsand\n")
    assert from_path_file(flat).nodes == ("kelp", "sand")  # no separator anywhere: no header guessed
    assert from_path_file(flat, header=True).nodes == ("sand",)


def test_path_file_column_by_name_or_index(tmp_path: Path) -> None:
    file = write(tmp_path / "aphia.csv", "catami,aphia_id\nA > B,12\nA > C,\nA,\n")
    assert from_path_file(file, column="catami").nodes == ("A", "A > B", "A > C")
    assert from_path_file(file, column=0, header=True).nodes == ("A", "A > B", "A > C")
    with pytest.raises(HierarchyError, match=r"has no column 'path'; its header is \['catami', 'aphia_id'\]"):
        from_path_file(file, column="path")
    with pytest.raises(HierarchyError, match="line 1 of .*aphia.csv has 2 fields; pass column="):
        from_path_file(file, header=False)


def test_path_file_extra_fields_beyond_the_header_name_the_line(tmp_path: Path) -> None:
    file = write(tmp_path / "scheme.csv", "catami\nA > B\nA > Sponges, massive\n")
    with pytest.raises(HierarchyError, match=r"line 3 of .*scheme.csv has 2 fields but the header has 1"):
        from_path_file(file)


def test_path_file_errors_name_file_and_lines(tmp_path: Path) -> None:
    file = write(tmp_path / "scheme.csv", "catami\nA > B\nA > C\nA > B,\n")
    with pytest.raises(HierarchyError, match=r"listed twice, at lines 2 and 4 of .*scheme.csv"):
        from_path_file(file)
    broken = write(tmp_path / "broken.csv", "catami\nA > B\nA >  > C\n")
    with pytest.raises(HierarchyError, match=r"line 3 of .*broken.csv: path 'A >  > C' has an empty level"):
        from_path_file(broken)
    with pytest.raises(HierarchyError, match="has no rows"):
        from_path_file(write(tmp_path / "empty.csv", "\n\n"))
    with pytest.raises(HierarchyError, match="no paths in .*header.csv"):
        from_path_file(write(tmp_path / "header.csv", "catami\n"), column="catami")
    with pytest.raises(FileNotFoundError, match="missing.csv does not exist"):
        from_path_file(tmp_path / "missing.csv")
    with pytest.raises(HierarchyError, match="is a folder"):
        from_path_file(tmp_path)


# ------------------------------------------------------------------ from_edges
def test_edges_build_a_dag_in_first_appearance_order() -> None:
    h = from_edges([("root", "a"), ("root", "b"), ("a", "c"), ("b", "c"), ("a", "c"), ("c", "d")])
    assert h.nodes == ("root", "a", "b", "c", "d")
    assert sorted(h.nodes[p] for p in h.parents[h.index("c")]) == ["a", "b"]
    assert not h.is_tree and h.excluded == ("root",)
    assert h.separator is None


def test_edges_with_extra_nodes_and_numbers() -> None:
    h = from_edges([(1, 2)], nodes=["lonely"], excluded=[])
    assert h.nodes == ("lonely", "1", "2") and h.roots == (0, 1)


def test_edge_errors_name_the_edge() -> None:
    with pytest.raises(HierarchyError, match=r"edge 2 of go.txt links 'b' to itself \(a self-loop\)"):
        from_edges([("a", "b"), ("b", "b")], source="go.txt")
    with pytest.raises(HierarchyError, match=r"edge 1 is \('a',\), not a \(parent, child\) pair"):
        from_edges([("a",)])
    with pytest.raises(HierarchyError, match="edge 1 has an empty node name"):
        from_edges([("a", " ")])
    with pytest.raises(HierarchyError, match="no edges or nodes"):
        from_edges([])


def test_edge_cycle_is_reported_as_a_chain() -> None:
    with pytest.raises(
        HierarchyError, match=r"has a cycle: '(a|b|c)' -> '(a|b|c)' -> '(a|b|c)' -> '(a|b|c)'"
    ):
        from_edges([("r", "a"), ("a", "b"), ("b", "c"), ("c", "a")])


# ------------------------------------------------------------------ parent tables
TABLE_CSV = """id,parent,name
1,,Biota
2,1,Sponges
3,2,Massive
4,1,Corals
5,4,Massive
6,,Substrate
"""


def test_parent_table_csv_with_path_naming(tmp_path: Path) -> None:
    h = from_parent_table(write(tmp_path / "tree.csv", TABLE_CSV))
    assert h.nodes == (
        "Biota",
        "Biota > Sponges",
        "Biota > Sponges > Massive",
        "Biota > Corals",
        "Biota > Corals > Massive",
        "Substrate",
    )
    assert h.nodes[h.parents[4][0]] == "Biota > Corals" and h.separator == " > "
    assert h.roots == (0, 5)


def test_parent_table_id_and_name_naming(tmp_path: Path) -> None:
    file = write(tmp_path / "tree.csv", TABLE_CSV)
    by_id = from_parent_table(file, naming="id")
    assert by_id.nodes == ("1", "2", "3", "4", "5", "6") and by_id.separator is None
    assert by_id.nodes[by_id.parents[2][0]] == "2"
    with pytest.raises(HierarchyError) as caught:
        from_parent_table(file, naming="name")
    message = str(caught.value)
    assert "'Massive' (line 4, line 6)" in message and "naming='path' or naming='id'" in message
    unique = write(tmp_path / "unique.csv", "id,parent,name\n1,,Biota\n2,1,Sponges\n")
    assert from_parent_table(unique, naming="name").nodes == ("Biota", "Sponges")


def test_parent_table_from_a_dataframe_with_float_parents_and_other_columns() -> None:
    frame = pd.DataFrame(
        {"code": [10, 20, 30, 40], "up": [np.nan, 10.0, 20.0, 10.0], "label": ["A", "B", "C", "D"]},
        index=["w", "x", "y", "z"],
    )
    h = from_parent_table(frame, id_column="code", parent_column="up", name_column="label")
    assert h.nodes == ("A", "A > B", "A > B > C", "A > D")
    assert h.excluded == ("A",)


def test_parent_table_dag_needs_name_or_id_naming() -> None:
    frame = pd.DataFrame(
        {"id": ["r", "a", "b", "c"], "parent": [None, "r", "r", "a|b"], "name": list("RABC")}
    )
    with pytest.raises(HierarchyError, match=r"naming='path' needs a tree.*id 'c' \(row 3\).*naming='name'"):
        from_parent_table(frame)
    h = from_parent_table(frame, naming="name")
    assert sorted(h.nodes[p] for p in h.parents[h.index("C")]) == ["A", "B"]
    listed = pd.DataFrame({"id": ["r", "a", "b", "c"], "parent": [None, "r", "r", ["a", "b"]]})
    assert from_parent_table(listed, naming="id") == from_parent_table(frame, naming="id")


def test_parent_table_errors_name_rows_and_ids(tmp_path: Path) -> None:
    unknown = write(tmp_path / "unknown.csv", "id,parent,name\n1,,A\n2,9,B\n")
    with pytest.raises(
        HierarchyError, match=r"line 3 of .*unknown.csv: parent id '9' of id '2' is not the id of any"
    ):
        from_parent_table(unknown)
    twice = write(tmp_path / "twice.csv", "id,parent,name\n1,,A\n2,1,B\n2,1,C\n")
    with pytest.raises(HierarchyError, match=r"id '2' is used twice, at line 3 and line 4 of .*twice.csv"):
        from_parent_table(twice)
    itself = write(tmp_path / "itself.csv", "id,parent,name\n1,1,A\n")
    with pytest.raises(HierarchyError, match=r"line 2 of .*itself.csv: id '1' is its own parent"):
        from_parent_table(itself)
    cycle = write(tmp_path / "cycle.csv", "id,parent,name\n1,,A\n2,3,B\n3,2,C\n")
    with pytest.raises(HierarchyError, match=r"cycle.csv has a cycle: '(2|3)' -> '(2|3)' -> '(2|3)'"):
        from_parent_table(cycle)
    siblings = write(tmp_path / "siblings.csv", "id,parent,name\n1,,A\n2,1,B\n3,1,B\n")
    with pytest.raises(HierarchyError, match=r"line 3 and line 4 of .*both give the node 'A > B'"):
        from_parent_table(siblings)
    no_name = write(tmp_path / "no_name.csv", "id,parent,name\n1,,A\n2,1,\n")
    with pytest.raises(HierarchyError, match=r"line 3 of .*\(id '2'\) has an empty name"):
        from_parent_table(no_name)
    assert len(from_parent_table(no_name, naming="id")) == 2
    no_id = write(tmp_path / "no_id.csv", "id,parent,name\n1,,A\n,1,B\n")
    with pytest.raises(HierarchyError, match=r"line 3 of .*has an empty id"):
        from_parent_table(no_id)
    with pytest.raises(
        HierarchyError, match=r"has no column\(s\) \['parent'\]; its columns are \['id', 'name'\]"
    ):
        from_parent_table(pd.DataFrame({"id": [1], "name": ["a"]}))
    with pytest.raises(FileNotFoundError):
        from_parent_table(tmp_path / "absent.csv")
    with pytest.raises(ValueError, match="naming must be one of"):
        from_parent_table(unknown, naming="code")


def test_catami_style_fixture(tmp_path: Path) -> None:
    records = [
        {"pk": 1, "model": "m", "fields": {"code_name": "Biota", "parent": None, "caab_code": "1"}},
        {"pk": 2, "model": "m", "fields": {"code_name": "Sponges", "parent": 1}},
        {"pk": 3, "model": "m", "fields": {"code_name": "Massive", "parent": 2}},
        {"pk": 4, "model": "m", "fields": {"code_name": "Corals", "parent": 1}},
        {"pk": 5, "model": "m", "fields": {"code_name": "Massive", "parent": 4}},
    ]
    file = write(tmp_path / "catami.json", json.dumps(records))
    h = from_catami_json(file)
    assert h.nodes[2] == "Biota > Sponges > Massive" and h.excluded == ("Biota",)
    assert from_catami_json(file, naming="id").nodes == ("1", "2", "3", "4", "5")
    with pytest.raises(HierarchyError, match=r"'Massive' \(record 3, record 5\)"):
        from_catami_json(file, naming="name")
    del records[3]["fields"]["parent"]
    with pytest.raises(HierarchyError, match=r"record 4 of .*bad.json lacks 'parent'"):
        from_catami_json(write(tmp_path / "bad.json", json.dumps(records)))
    with pytest.raises(HierarchyError, match="not a list of fixture records"):
        from_catami_json(write(tmp_path / "dict.json", json.dumps({"a": 1})))
    with pytest.raises(HierarchyError, match="is not valid JSON"):
        from_catami_json(write(tmp_path / "broken.json", "[{"))


# ------------------------------------------------------------------ from_folder
def test_folder_tree(tmp_path: Path) -> None:
    for relative in [
        "Biota/Macroalgae/Kelp/a.jpg",
        "Biota/Macroalgae/Red/b.PNG",
        "Biota/Sponges/c.jpeg",
        "Substrate/Sand/d.tif",
        ".thumbnails/Biota/e.jpg",
        "annotations/notes.csv",
    ]:
        write(tmp_path / "images" / relative, "x")
    (tmp_path / "images" / "Substrate" / "Empty").mkdir()
    h = from_folder(tmp_path / "images")
    assert h.nodes == (
        "Biota",
        "Biota > Macroalgae",
        "Biota > Macroalgae > Kelp",
        "Biota > Macroalgae > Red",
        "Biota > Sponges",
        "Substrate",
        "Substrate > Sand",
    )
    assert h.nodes[h.parents[h.index("Biota > Macroalgae > Red")][0]] == "Biota > Macroalgae"
    everything = from_folder(tmp_path / "images", image_extensions=None)
    assert {"annotations", "Substrate > Empty"} <= set(everything.nodes)
    assert not any(name.startswith(".") for name in everything.nodes)


def test_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        from_folder(tmp_path / "nowhere")
    write(tmp_path / "flat" / "a.jpg", "x")
    with pytest.raises(HierarchyError, match="flat has no subfolders"):
        from_folder(tmp_path / "flat")
    write(tmp_path / "no_images" / "docs" / "readme.txt", "x")
    with pytest.raises(HierarchyError, match=r"no subfolders holding images \(\.jpg"):
        from_folder(tmp_path / "no_images")
    with pytest.raises(HierarchyError, match="is a file, not a folder"):
        from_folder(tmp_path / "flat" / "a.jpg")


# ------------------------------------------------------------------ from_arff
def arff(path: Path, attribute_line: str, data: str = "1.0,01/01\n") -> Path:
    return write(
        path,
        f"@RELATION test\n\n@ATTRIBUTE x1 NUMERIC\n{attribute_line}\n\n@DATA\n{data}",
    )


def test_arff_paths_add_an_excluded_root_and_take_parents_from_prefixes(tmp_path: Path) -> None:
    file = arff(tmp_path / "fun.arff", "@ATTRIBUTE class hierarchical 01/02/03,01,01/02,02,01/04")
    h = from_arff(file)
    assert h.nodes == ("root", "01", "01/02", "01/02/03", "02", "01/04")  # parents first
    assert h.nodes[h.parents[h.index("01/02/03")][0]] == "01/02"
    assert [h.nodes[p] for p in h.parents[h.index("01")]] == ["root"]
    assert h.excluded == ("root",) and int(h.evaluated.sum()) == 5
    assert h.separator == "/" and h.is_tree
    assert h.short_name("01/02/03") == "03"


def test_arff_edges_exclude_root_and_the_go_roots(tmp_path: Path) -> None:
    line = (
        "@attribute 'class' HIERARCHICAL root/GO0003674,GO0003674/GO1,GO0003674/GO2,GO1/GO3,GO2/GO3,"
        "root/GO0008150,GO0008150/GO4,GO1/GO3"
    )
    h = from_arff(arff(tmp_path / "go.arff", line))
    assert h.nodes == ("root", "GO0003674", "GO1", "GO2", "GO3", "GO0008150", "GO4")
    assert h.excluded == ("root", "GO0003674", "GO0008150")
    assert sorted(h.nodes[p] for p in h.parents[h.index("GO3")]) == ["GO1", "GO2"]
    assert from_arff(arff(tmp_path / "go2.arff", line), excluded=["root"]).excluded == ("root",)
    assert set(GO_ROOTS) >= {"GO0003674", "GO0008150"}


def test_arff_kind_can_be_forced_and_a_line_can_be_given(tmp_path: Path) -> None:
    line = "@ATTRIBUTE class hierarchical a/b,b/c"
    assert from_arff(line).nodes == ("root", "a", "a/b", "b", "b/c")
    edges = from_arff(line, kind="edges")
    assert edges.nodes == ("a", "b", "c") and edges.excluded == ("a",)  # no root: the core default
    with pytest.raises(ValueError, match="kind must be one of"):
        from_arff(line, kind="tree")


def test_arff_errors_name_file_and_line(tmp_path: Path) -> None:
    malformed = arff(tmp_path / "bad_edge.arff", "@ATTRIBUTE class hierarchical root/a,a/b/c")
    with pytest.raises(
        HierarchyError, match=r"line 4 of .*bad_edge.arff: item 2 \('a/b/c'\) is not a parent/child"
    ):
        from_arff(malformed)
    empty_item = arff(tmp_path / "empty_item.arff", "@ATTRIBUTE class hierarchical 01,,02")
    with pytest.raises(
        HierarchyError, match=r"line 4 of .*empty_item.arff: item 2 of the hierarchy list is empty"
    ):
        from_arff(empty_item)
    empty_level = arff(tmp_path / "empty_level.arff", "@ATTRIBUTE class hierarchical 01,01//02")
    with pytest.raises(HierarchyError, match=r"line 4 of .*: item 2 \('01//02'\) has an empty level"):
        from_arff(empty_level)
    no_values = arff(tmp_path / "no_values.arff", "@ATTRIBUTE class hierarchical   ")
    with pytest.raises(
        HierarchyError, match=r"line 4 of .*no_values.arff: the hierarchical attribute lists no"
    ):
        from_arff(no_values)
    missing = arff(tmp_path / "missing.arff", "@ATTRIBUTE class {a,b}")
    with pytest.raises(HierarchyError, match=r"missing.arff reaches @DATA at line 6 without a hierarchical"):
        from_arff(missing)
    cut = write(tmp_path / "cut.arff", "@RELATION r\n@ATTRIBUTE x NUMERIC\n")
    with pytest.raises(HierarchyError, match="cut.arff has no hierarchical class attribute"):
        from_arff(cut)
    loop = arff(tmp_path / "loop.arff", "@ATTRIBUTE class hierarchical root/a,a/b,b/a")
    with pytest.raises(HierarchyError, match=r"cycle: .*\(hierarchy at line 4 of .*loop.arff\)"):
        from_arff(loop)
    self_loop = arff(tmp_path / "self.arff", "@ATTRIBUTE class hierarchical root/a,a/a")
    with pytest.raises(
        HierarchyError, match=r"line 4 of .*self.arff: item 2 \('a/a'\) links a node to itself"
    ):
        from_arff(self_loop)
    with pytest.raises(FileNotFoundError):
        from_arff(tmp_path / "absent.arff")


def test_arff_ignores_what_follows_the_hierarchy_line(tmp_path: Path) -> None:
    file = arff(tmp_path / "big.arff", "@ATTRIBUTE class hierarchical 01")
    file.write_bytes(file.read_bytes() + b"\xff\xfe not text \x00\n" * 1000)
    assert len(from_arff(file)) == 2


# ------------------------------------------------------------------ load_hierarchy
def test_load_dispatches_on_file_type(tmp_path: Path) -> None:
    paths = load_hierarchy(write(tmp_path / "paths.csv", "catami\nA > B\n"))
    assert paths.nodes == ("A", "A > B")
    table = Hierarchy.load(write(tmp_path / "table.csv", TABLE_CSV), naming="id")
    assert table.nodes == ("1", "2", "3", "4", "5", "6")
    renamed = write(tmp_path / "renamed.csv", "code,up\n1,\n2,1\n")
    assert load_hierarchy(renamed, id_column="code", parent_column="up", naming="id").nodes == ("1", "2")
    assert load_hierarchy(arff(tmp_path / "fun.arff", "@ATTRIBUTE class hierarchical 01/02")).nodes == (
        "root",
        "01",
        "01/02",
    )
    write(tmp_path / "images" / "Biota" / "Kelp" / "a.jpg", "x")
    assert load_hierarchy(tmp_path / "images").nodes == ("Biota", "Biota > Kelp")
    fixture = [{"pk": 1, "fields": {"code_name": "A", "parent": None}}]
    assert load_hierarchy(write(tmp_path / "fixture.json", json.dumps(fixture))).nodes == ("A",)


def test_load_reads_back_to_dict_json(tmp_path: Path) -> None:
    h = from_edges([("r", "a"), ("r", "b"), ("a", "c"), ("b", "c")])
    file = write(tmp_path / "saved.json", json.dumps(h.to_dict()))
    assert load_hierarchy(file) == h
    assert load_hierarchy(file, excluded=["r", "a"]).excluded == ("r", "a")
    with pytest.raises(TypeError, match="takes only excluded="):
        load_hierarchy(file, naming="id")


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_hierarchy(tmp_path / "absent.csv")
    with pytest.raises(HierarchyError, match=r"unknown file type '\.xlsx'"):
        load_hierarchy(write(tmp_path / "tree.xlsx", "x"))
    with pytest.raises(HierarchyError, match="neither a Hierarchy.to_dict"):
        load_hierarchy(write(tmp_path / "other.json", json.dumps({"classes": []})))


# ------------------------------------------------------------------ real data
CATAMI_CSV = ("catami_scheme", "benthicnet_probes_catami_ex.csv")
CATAMI_APHIA = ("catami_scheme", "benthicnet_probes_finalized_output_with_aphia.csv")
CATAMI_JSON = ("catami_scheme", "catami_classification_tree_catami-catami.json")
HMC = "hmc_benchmarks", "HMC_data"


def test_real_catami_csv_has_duplicate_rows_named_by_line() -> None:
    with pytest.raises(
        HierarchyError,
        match=r"'\[BIOTA\] > Anthropogenic > Benthic equipment' is listed twice, at lines 2 and 304",
    ):
        from_path_file(shared_data_path(*CATAMI_CSV))


def test_real_catami_csv() -> None:
    h = from_path_file(shared_data_path(*CATAMI_CSV), on_duplicate="ignore")
    assert len(h) == 314  # 306 distinct paths + 8 prefixes never listed on their own
    assert {h.nodes[r] for r in h.roots} == {"[BIOTA]", "[SUBSTRATE]", "[RELIEF]", "[BEDFORMS]"}
    assert int(h.depth.max()) == 7 and h.is_tree
    assert h.excluded == () and int(h.evaluated.sum()) == 314
    assert "[BIOTA] > Biota > Fishes > Elasmobranchs" in h  # only implied by its children
    assert "[RELIEF] > High > High (>3m)" in h
    assert load_hierarchy(shared_data_path(*CATAMI_CSV), on_duplicate="ignore") == h
    targets, _ = h.encode(["[BIOTA] > Biota > Sponges > Massive forms|[SUBSTRATE] > Substrate"])
    assert int(targets.sum()) == 4 + 2


def test_real_catami_aphia_csv_by_column() -> None:
    h = from_path_file(shared_data_path(*CATAMI_APHIA), column="catami", on_duplicate="ignore")
    assert len(h) == 340 and len(h.roots) == 4


def test_real_catami_json() -> None:
    h = from_catami_json(shared_data_path(*CATAMI_JSON))
    assert len(h) == 274 and h.is_tree and int(h.depth.max()) == 8
    assert [h.nodes[r] for r in h.roots] == ["Not Considered"]
    assert h.excluded == ("Not Considered",) and int(h.evaluated.sum()) == 273
    assert sorted(h.short_name(c) for c in h.children[h.roots[0]]) == [
        "Biota",
        "Not of Interest",
        "Physical",
        "Unscorable.",
    ]
    assert "Not Considered > Biota > Sponges" in h
    with pytest.raises(HierarchyError, match="naming='name' needs unique names.*'Stalked'"):
        from_catami_json(shared_data_path(*CATAMI_JSON), naming="name")
    by_id = from_catami_json(shared_data_path(*CATAMI_JSON), naming="id")
    assert len(by_id) == 274 and by_id.parents == h.parents
    assert load_hierarchy(shared_data_path(*CATAMI_JSON)) == h


# (folder, file stem, evaluated nodes = C-HMCNN's output size, all nodes including root)
FUNCAT = [
    ("cellcycle", 499),
    ("church", 499),
    ("derisi", 499),
    ("eisen", 461),
    ("gasch1", 499),
    ("gasch2", 499),
    ("pheno", 455),
    ("seq", 499),
    ("spo", 499),
]
GENE_ONTOLOGY = [
    ("cellcycle", 4122),
    ("derisi", 4116),
    ("eisen", 3570),
    ("gasch1", 4122),
    ("gasch2", 4128),
    ("pheno", 3124),
    ("seq", 4130),
    ("spo", 4116),
]
OTHERS = [
    ("Diatoms_train.arff", 398),
    ("Enron_corr_trainvalid.arff", 56),
    ("ImCLEF07A_Train.arff", 96),
    ("ImCLEF07D_Train.arff", 46),
]


@pytest.mark.parametrize(("name", "evaluated"), FUNCAT)
def test_real_funcat_evaluated_counts(name: str, evaluated: int) -> None:
    h = from_arff(shared_data_path(*HMC, "datasets_FUN", f"{name}_FUN", f"{name}_FUN.train.arff"))
    assert h.is_tree and h.excluded == ("root",)
    assert len(h) == evaluated + 1 and int(h.evaluated.sum()) == evaluated


@pytest.mark.parametrize(("name", "evaluated"), GENE_ONTOLOGY)
def test_real_gene_ontology_evaluated_counts(name: str, evaluated: int) -> None:
    file = shared_data_path(*HMC, "datasets_GO", f"{name}_GO", f"{name}_GO.train.arff")
    h = from_arff(file)
    assert not h.is_tree and h.excluded == ("root", *GO_ROOTS)
    # C-HMCNN's output size leaves out root AND the three GO roots: all nodes minus 4
    assert len(h) == evaluated + 4 and int(h.evaluated.sum()) == evaluated


@pytest.mark.parametrize(("file_name", "evaluated"), OTHERS)
def test_real_other_sets_evaluated_counts(file_name: str, evaluated: int) -> None:
    h = from_arff(shared_data_path(*HMC, "others", file_name))
    assert h.is_tree and h.excluded == ("root",)
    assert len(h) == evaluated + 1 and int(h.evaluated.sum()) == evaluated


def test_real_splits_share_one_hierarchy() -> None:
    folder = shared_data_path(*HMC, "datasets_GO", "cellcycle_GO")
    train, valid, test = (
        from_arff(folder / f"cellcycle_GO.{split}.arff") for split in ("train", "valid", "test")
    )
    assert train == valid == test
    assert from_arff(shared_data_path(*HMC, "others", "ImCLEF07D_Test.arff")) == from_arff(
        shared_data_path(*HMC, "others", "ImCLEF07D_Train.arff")
    )


def test_real_gene_ontology_encodes_a_dag_label() -> None:
    h = from_arff(shared_data_path(*HMC, "datasets_GO", "cellcycle_GO", "cellcycle_GO.train.arff"))
    deepest = int(np.argmax(h.depth))
    targets, _ = h.encode([[deepest]])
    assert set(np.flatnonzero(targets[0].numpy()).tolist()) == set(h.ancestors(deepest, include_self=True))
    assert targets[0, h.index("root")] == 1
