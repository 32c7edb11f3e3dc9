"""HMC ARFF reading, benchmark loading and the published preprocessing.

Synthetic ARFF texts (written to tmp_path) pin behaviour and error messages; the real benchmark files in
../shared/data pin sizes (a few files only, to stay fast; scripts/check_hmc_data.py reads them all).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from seabed_hmc.hierarchy import Hierarchy, HierarchyError
from seabed_hmc_studies.hmc.arff import ArffError, read_arff
from seabed_hmc_studies.hmc.datasets import (
    Standardiser,
    available_hmc_datasets,
    load_hmc_dataset,
    prepare_hmc_fit_splits,
    prepare_hmc_splits,
)
from tests.conftest import shared_data_path

HMC = ("hmc_benchmarks", "HMC_data")
NAN = math.nan

TOY = """% a comment before the header
@RELATION 'toy set'

@ATTRIBUTE 'size (m)' NUMERIC
@attribute depth real
@Attribute colour {red, 'dark blue', green}
@ATTRIBUTE count integer
@ATTRIBUTE class hierarchical 01,01/01,01/02,02,02/01

@DATA
% a comment among the rows
1.5, 10, red, 3, 01/01
?,20,'dark blue',4,01/02@02
3.0,?,?,5,02/01

2,40,green,?,01
"""
TOY_ROW_LINES = [12, 13, 14, 16]


def write(path: Path, text: str, newline: str = "\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline=newline) as handle:
        handle.write(text)
    return path


def toy_with(tmp_path: Path, old: str, new: str, name: str = "bad.arff") -> Path:
    assert old in TOY
    return write(tmp_path / name, TOY.replace(old, new, 1))


def positive_nodes(data, row: int) -> set[str]:
    return {data.hierarchy.nodes[i] for i in np.flatnonzero(data.targets[row].numpy())}


# ------------------------------------------------------------------ reading
def test_read_arff_gives_features_labels_and_ancestor_closed_targets(tmp_path: Path) -> None:
    data = read_arff(write(tmp_path / "toy.arff", TOY))
    assert data.relation == "toy set"
    assert data.feature_names == [
        "size (m)",
        "depth",
        "colour=red",
        "colour=dark blue",
        "colour=green",
        "count",
    ]
    expected = np.array(
        [
            [1.5, 10, 1, 0, 0, 3],
            [NAN, 20, 0, 1, 0, 4],
            [3.0, NAN, NAN, NAN, NAN, 5],
            [2, 40, 0, 0, 1, NAN],
        ],
        dtype=np.float32,
    )
    assert data.features.dtype == np.float32
    np.testing.assert_array_equal(data.features, expected)  # NaN == NaN here
    assert data.labels == [["01/01"], ["01/02", "02"], ["02/01"], ["01"]]
    assert data.line_numbers.tolist() == TOY_ROW_LINES
    assert len(data) == 4 and data.input_dim == 6
    assert positive_nodes(data, 0) == {"root", "01", "01/01"}
    assert positive_nodes(data, 1) == {"root", "01", "01/02", "02"}
    assert positive_nodes(data, 2) == {"root", "02", "02/01"}
    assert positive_nodes(data, 3) == {"root", "01"}
    assert data.targets.dtype == data.mask.dtype == torch.float32
    assert data.targets.shape == data.mask.shape == (4, 6)
    assert bool((data.mask == 1).all())  # benchmark labels are complete
    assert data.hierarchy == Hierarchy.from_arff(data.path)
    assert data.hierarchy.excluded == ("root",)
    assert "4 rows, 6 features, 6 nodes" in repr(data)


def test_crlf_line_ends_give_the_same_data(tmp_path: Path) -> None:
    unix = read_arff(write(tmp_path / "unix.arff", TOY))
    windows = read_arff(write(tmp_path / "windows.arff", TOY, newline="\r\n"))
    np.testing.assert_array_equal(unix.features, windows.features)
    assert unix.labels == windows.labels
    assert windows.line_numbers.tolist() == TOY_ROW_LINES


def test_quoted_values_may_hold_commas_and_spaces(tmp_path: Path) -> None:
    text = TOY.replace("{red, 'dark blue', green}", "{red, 'dark, blue', green}").replace(
        "'dark blue'", "'dark, blue'"
    )
    data = read_arff(write(tmp_path / "comma.arff", text))
    assert data.feature_names[3] == "colour=dark, blue"
    np.testing.assert_array_equal(data.features[1, 2:5], [0, 1, 0])


def test_a_given_hierarchy_is_used_as_is(tmp_path: Path) -> None:
    file = write(tmp_path / "toy.arff", TOY)
    given = Hierarchy.from_arff(file, excluded=["root", "02"])
    data = read_arff(file, hierarchy=given)
    assert data.hierarchy is given
    assert data.hierarchy.excluded == ("root", "02")


def test_go_style_edges_give_go_id_nodes(tmp_path: Path) -> None:
    text = (
        "@relation go\n@attribute x numeric\n"
        "@attribute class hierarchical root/GO0008150,GO0008150/GO1,GO1/GO2,GO0008150/GO3,GO3/GO2\n"
        "@data\n1,GO2\n2,GO3@GO0008150\n"
    )
    data = read_arff(write(tmp_path / "go.arff", text))
    assert set(data.hierarchy.excluded) == {"root", "GO0008150"}
    assert positive_nodes(data, 0) == {"root", "GO0008150", "GO1", "GO2", "GO3"}  # a DAG: both parents
    assert positive_nodes(data, 1) == {"root", "GO0008150", "GO3"}


def test_an_empty_data_section_gives_zero_rows(tmp_path: Path) -> None:
    data = read_arff(write(tmp_path / "empty.arff", TOY[: TOY.index("% a comment among")]))
    assert data.features.shape == (0, 6)
    assert data.targets.shape == (0, 6) and data.labels == []


def test_numbers_outside_the_fast_parser_are_still_read(tmp_path: Path) -> None:
    # pandas rejects "nan" and "1_000" with keep_default_na=False; the exact pass accepts what float() does
    data = read_arff(toy_with(tmp_path, "1.5, 10, red, 3", "nan, 1_000, red, 3"))
    assert math.isnan(data.features[0, 0]) and data.features[0, 1] == 1000
    np.testing.assert_array_equal(data.features[1:], read_arff(write(tmp_path / "t.arff", TOY)).features[1:])


def test_a_wide_file_with_missing_values_is_read_whole(tmp_path: Path) -> None:
    """2,000 x 1,000 with 5% missing: every value and every missing one arrives (the speed of this read
    is measured by scripts/bench_arff.py, not here)."""
    rows, columns = 2000, 1000
    rng = np.random.default_rng(0)
    values = np.round(rng.normal(size=(rows, columns)), 3).astype(str)
    values[rng.random((rows, columns)) < 0.05] = "?"
    header = "".join(f"@attribute f{j} numeric\n" for j in range(columns))
    body = "\n".join(",".join(row) + ",a/b" for row in values)
    file = write(
        tmp_path / "big.arff", f"@relation big\n{header}@attribute c hierarchical a,a/b\n@data\n{body}\n"
    )
    data = read_arff(file)
    assert data.features.shape == (rows, columns)
    missing = values == "?"
    assert (np.isnan(data.features) == missing).all()
    np.testing.assert_allclose(data.features[~missing], values[~missing].astype(float))


# ------------------------------------------------------------------ errors
@pytest.mark.parametrize(
    ("old", "new", "line", "words"),
    [
        (
            "1.5, 10, red, 3, 01/01",
            "1.5, 10, red, 01/01",
            12,
            "has 4 comma-separated fields but the header declares 5",
        ),
        ("2,40,green,?,01", "2,40,green,?,7,01", 16, "has 6 comma-separated fields"),
        ("?,20,'dark blue'", "?,2O,'dark blue'", 13, "field 2 (attribute 'depth'): '2O' is not a number"),
        ("1.5, 10, red", "1.5, , red", 12, "'' is not a number"),
        ("2,40,green", "2,40,blue", 16, "'blue' is not a declared value of nominal attribute 'colour'"),
        ("3.0,?,?,5,02/01", "3.0,?,?,5,02/07", 14, "label '02/07' is not a node of the hierarchy"),
        ("3.0,?,?,5,02/01", "3.0,?,?,5,?", 14, "the class field ('class') is missing"),
        ("3.0,?,?,5,02/01", "3.0,?,?,5,02/01@", 14, "has an empty label in '02/01@'"),
        ("2,40,green,?,01", "{0 2, 4 01}", 16, "sparse ARFF rows"),
        ("@attribute depth real", "@attribute depth string", 5, "type 'string', which this reader does not"),
        ("@attribute depth real", "@attribute depth float", 5, "unknown type 'float'"),
        ("@attribute depth real", "@attribute depth", 5, "needs a name and a type"),
        ("{red, 'dark blue', green}", "{red, 'dark blue', red}", 6, "lists ['red'] more than once"),
        ("@RELATION 'toy set'", "@RELATON 'toy set'", 2, "expected @RELATION, @ATTRIBUTE or @DATA"),
    ],
)
def test_errors_name_the_file_the_line_and_the_problem(
    tmp_path: Path, old: str, new: str, line: int, words: str
) -> None:
    file = toy_with(tmp_path, old, new)
    with pytest.raises(ArffError) as caught:
        read_arff(file)
    message = str(caught.value)
    assert f"line {line} of {file}" in message
    assert words in message
    assert caught.value.line == line and caught.value.path == file


def test_an_unknown_label_suggests_close_nodes(tmp_path: Path) -> None:
    with pytest.raises(ArffError, match=r"did you mean \['02/01'"):
        read_arff(toy_with(tmp_path, "3.0,?,?,5,02/01", "3.0,?,?,5,02/1"))


def test_a_file_without_data_or_hierarchy_is_refused(tmp_path: Path) -> None:
    no_data = write(tmp_path / "no_data.arff", TOY[: TOY.index("@DATA")])
    with pytest.raises(ArffError, match=rf"{no_data} has no @DATA line"):
        read_arff(no_data)
    no_class = toy_with(tmp_path, "@ATTRIBUTE class hierarchical 01,01/01,01/02,02,02/01\n", "")
    with pytest.raises(ArffError, match=rf"{no_class} has no hierarchical class attribute"):
        read_arff(no_class)
    two = toy_with(tmp_path, "@attribute depth real", "@attribute depth hierarchical a", "two.arff")
    with pytest.raises(ArffError, match=r"2 hierarchical attributes \(lines 5, 8\)"):
        read_arff(two)


def test_a_malformed_hierarchy_and_a_missing_file_raise_their_own_errors(tmp_path: Path) -> None:
    with pytest.raises(HierarchyError, match="empty"):
        read_arff(toy_with(tmp_path, "hierarchical 01,01/01,", "hierarchical 01,,01/01,"))
    with pytest.raises(FileNotFoundError, match="nowhere.arff does not exist"):
        read_arff(tmp_path / "nowhere.arff")


# ------------------------------------------------------------------ benchmark layout
def make_benchmarks(root: Path) -> Path:
    """A tiny HMC_data tree: toy_FUN (train/valid/test) and diatoms (train/test)."""
    folder = root / "HMC_data"
    for split in ("train", "valid", "test"):
        write(folder / "datasets_FUN" / "toy_FUN" / f"toy_FUN.{split}.arff", TOY)
    write(folder / "others" / "Diatoms_train.arff", TOY)
    write(folder / "others" / "Diatoms_test.arff", TOY.replace("1.5, 10, red, 3", "9, 90, red, 9"))
    return folder


def test_load_hmc_dataset_shares_one_hierarchy_across_splits(tmp_path: Path) -> None:
    folder = make_benchmarks(tmp_path)
    dataset = load_hmc_dataset(folder, "TOY_fun")
    assert (dataset.name, dataset.family) == ("toy_FUN", "FUN")
    assert dataset.train.hierarchy is dataset.valid.hierarchy is dataset.test.hierarchy is dataset.hierarchy
    assert [len(dataset.train), len(dataset.valid), len(dataset.test)] == [4, 4, 4]
    others = load_hmc_dataset(tmp_path, "Diatoms")  # the parent of HMC_data works too
    assert (others.name, others.family, others.valid) == ("diatoms", "others", None)
    assert others.test.features[0, 0] == 9
    assert available_hmc_datasets(folder) == ["toy_FUN", "diatoms"]


def test_a_missing_split_names_the_path_and_the_available_datasets(tmp_path: Path) -> None:
    folder = make_benchmarks(tmp_path)
    (folder / "datasets_FUN" / "toy_FUN" / "toy_FUN.valid.arff").unlink()
    expected = folder / "datasets_FUN" / "toy_FUN" / "toy_FUN.valid.arff"
    with pytest.raises(FileNotFoundError, match=rf"expected {expected}.*available.*\['diatoms'\]"):
        load_hmc_dataset(folder, "toy_FUN")
    with pytest.raises(FileNotFoundError, match=r"'enron'.*Enron_corr_trainvalid.arff"):
        load_hmc_dataset(folder, "enron")
    with pytest.raises(ValueError, match=r"'toy' is not an HMC benchmark name.*\['diatoms'\]"):
        load_hmc_dataset(folder, "toy")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_hmc_dataset(tmp_path / "elsewhere", "toy_FUN")


def test_splits_must_declare_the_same_hierarchy_and_attributes(tmp_path: Path) -> None:
    folder = make_benchmarks(tmp_path)
    test_file = folder / "datasets_FUN" / "toy_FUN" / "toy_FUN.test.arff"
    write(test_file, TOY.replace("01,01/01,01/02,02,02/01", "01,01/01,01/02,02,02/01,03"))
    with pytest.raises(ArffError, match=rf"{test_file} declares a different hierarchy"):
        load_hmc_dataset(folder, "toy_FUN")
    write(test_file, TOY.replace("{red, 'dark blue', green}", "{red, green, 'dark blue'}"))
    with pytest.raises(ArffError, match=r"first differ at column 4 \('colour=green' vs 'colour=dark blue'\)"):
        load_hmc_dataset(folder, "toy_FUN")


# ------------------------------------------------------------------ preprocessing
def test_standardiser_matches_sklearn_imputer_and_scaler_fitted_on_raw_training_data() -> None:
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(3)
    train = rng.normal(2.0, 3.0, size=(200, 6))
    train[rng.random(train.shape) < 0.2] = np.nan
    train[:, 4] = 7.25  # constant: scale 1
    test = rng.normal(size=(50, 6))
    test[rng.random(test.shape) < 0.2] = np.nan
    scaler, imputer = StandardScaler().fit(train), SimpleImputer(strategy="mean").fit(train)
    standardiser = Standardiser.fit(train)
    for x in (train, test):
        np.testing.assert_allclose(
            standardiser.transform(x), scaler.transform(imputer.transform(x)), atol=1e-5
        )
    np.testing.assert_allclose(standardiser.mean, scaler.mean_)
    np.testing.assert_allclose(standardiser.scale, scaler.scale_)
    assert standardiser.scale[4] == 1.0
    assert standardiser.transform(test).dtype == np.float32


def test_standardiser_keeps_a_column_missing_in_every_training_row_as_zeros() -> None:
    train = np.array([[1.0, NAN], [3.0, NAN]])
    standardiser = Standardiser.fit(torch.tensor(train))
    assert standardiser.mean.tolist() == [2.0, 0.0] and standardiser.scale.tolist() == [1.0, 1.0]
    np.testing.assert_array_equal(standardiser.transform([[NAN, 5.0], [5.0, NAN]]), [[0.0, 5.0], [3.0, 0.0]])
    with pytest.raises(ValueError, match="3 columns but the standardiser was fitted on 2"):
        standardiser.transform(np.zeros((1, 3)))


def test_a_missing_nominal_value_is_imputed_with_the_category_frequencies(tmp_path: Path) -> None:
    data = read_arff(write(tmp_path / "toy.arff", TOY))
    standardiser = Standardiser.fit(data.features)
    imputed = data.features[2, 2:5].copy()
    filled = standardiser.transform(data.features)[2, 2:5] * standardiser.scale[2:5] + standardiser.mean[2:5]
    assert np.isnan(imputed).all()
    np.testing.assert_allclose(filled, [1 / 3, 1 / 3, 1 / 3], atol=1e-6)  # red, dark blue, green once each


def test_prepare_hmc_splits_merges_train_and_valid_for_funcat_only(tmp_path: Path) -> None:
    folder = make_benchmarks(tmp_path)
    funcat = prepare_hmc_splits(load_hmc_dataset(folder, "toy_FUN"))
    assert funcat.x_train.shape == (8, 6) and funcat.y_train.shape == funcat.mask_train.shape == (8, 6)
    assert funcat.x_test.shape == (4, 6)
    x_train, y_train, mask_train, x_test, y_test, mask_test = funcat  # unpacks as the 6-tuple
    assert x_train.dtype == torch.float32 and not torch.isnan(x_train).any()
    assert torch.allclose(x_train.mean(dim=0), torch.zeros(6), atol=1e-6)

    diatoms = load_hmc_dataset(folder, "diatoms")
    others = prepare_hmc_splits(diatoms)
    assert others.x_train.shape == (4, 6) and others.x_test.shape == (4, 6)
    sizes = diatoms.train.features[:, 0]
    mean, std = np.nanmean(sizes), np.nanstd(sizes)  # the test row 9.0 is scaled with training statistics
    assert others.x_test[0, 0].item() == pytest.approx((9.0 - mean) / std, rel=1e-5)
    assert torch.equal(others.y_test, diatoms.test.targets)


def test_the_fit_part_is_kept_out_of_training_and_scaled_with_training_statistics(
    tmp_path: Path,
) -> None:
    folder = make_benchmarks(tmp_path)
    funcat = load_hmc_dataset(folder, "toy_FUN")
    splits, fit = prepare_hmc_fit_splits(funcat)
    assert fit.source == "valid" and len(fit.x) == len(funcat.valid)
    assert len(splits.x_train) == len(funcat.train)  # the valid file does not train
    assert torch.equal(fit.y, funcat.valid.targets)
    standardiser = Standardiser.fit(funcat.train.features)  # fitted on the training rows only
    np.testing.assert_allclose(fit.x.numpy(), standardiser.transform(funcat.valid.features), rtol=1e-6)

    diatoms = load_hmc_dataset(folder, "diatoms")  # no valid file: a seeded fifth of train
    splits, fit = prepare_hmc_fit_splits(diatoms)
    again, fit_again = prepare_hmc_fit_splits(diatoms)
    assert len(fit.x) == 1 and len(splits.x_train) == 3 and "20%" in fit.source
    assert torch.equal(fit.x, fit_again.x) and torch.equal(splits.x_train, again.x_train)  # every run alike
    # the two parts are the training file, each row once
    parts = sorted(map(tuple, torch.cat([fit.y, splits.y_train]).tolist()))
    assert parts == sorted(map(tuple, diatoms.train.targets.tolist()))
    assert torch.allclose(splits.x_train[:, :2].mean(dim=0), torch.zeros(2), atol=1e-6)  # fit on these rows


# ------------------------------------------------------------------ real data
def hmc_file(*parts: str) -> Path:
    return shared_data_path(*HMC, *parts)


def test_real_cellcycle_funcat_splits_sizes_and_labels() -> None:
    root = hmc_file()
    dataset = load_hmc_dataset(root, "cellcycle_FUN")
    assert [len(dataset.train), len(dataset.valid), len(dataset.test)] == [1628, 848, 1281]
    assert dataset.input_dim == 77
    assert (len(dataset.hierarchy), int(dataset.hierarchy.evaluated.sum())) == (500, 499)
    for split in (dataset.train, dataset.valid, dataset.test):
        assert all(split.labels)
        assert bool((split.targets[:, dataset.hierarchy.evaluated].sum(dim=1) > 0).all())
    assert np.isnan(dataset.train.features).any()  # cellcycle has missing values
    prepared = prepare_hmc_splits(dataset)
    assert prepared.x_train.shape == (2476, 77) and prepared.x_test.shape == (1281, 77)
    assert bool(prepared.x_train.isfinite().all() and prepared.x_test.isfinite().all())
    assert "cellcycle_FUN" in available_hmc_datasets(root)


def test_real_go_training_file_has_go_id_labels() -> None:
    data = read_arff(hmc_file("datasets_GO", "cellcycle_GO", "cellcycle_GO.train.arff"))
    assert data.features.shape == (1625, 77)
    assert (len(data.hierarchy), int(data.hierarchy.evaluated.sum())) == (4126, 4122)
    assert all(label.startswith("GO") for row in data.labels for label in row)
    # 27 training genes are labelled only with the three GO roots: no evaluated positive
    evaluated_positives = data.targets[:, data.hierarchy.evaluated].sum(dim=1)
    assert int((evaluated_positives == 0).sum()) == 27


def test_real_church_one_hot_differs_from_the_c_hmcnn_dictionary() -> None:
    # 26 numeric attributes + chip_affymetrix_chip {A,B,C,D,A-D} one-hot = 31 (C-HMCNN's dict says 27)
    data = read_arff(hmc_file("datasets_FUN", "church_FUN", "church_FUN.test.arff"))
    assert data.features.shape == (1281, 31)
    assert data.feature_names[:5] == [f"chip_affymetrix_chip={v}" for v in ("A", "B", "C", "D", "A-D")]


@pytest.mark.parametrize(
    ("file_name", "rows", "dim", "nodes"),
    [("Diatoms_test.arff", 1054, 371, 399), ("Enron_corr_test.arff", 660, 1001, 57)],
)
def test_real_other_test_files(file_name: str, rows: int, dim: int, nodes: int) -> None:
    data = read_arff(hmc_file("others", file_name))
    assert data.features.shape == (rows, dim)
    assert len(data.hierarchy) == nodes and data.hierarchy.excluded == ("root",)
    assert all(data.labels)
    assert not np.isnan(data.features).any()
