"""The hostile-input corpus (seabed_hmc_studies/hostile.py) through the commands a user runs: every case
ends in a clear error naming the file, row or key (exit status 2, no traceback), or in a reported skip."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import rasterio
import yaml

from seabed_hmc.cli import main
from seabed_hmc_studies.hostile import CASES, make_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return make_corpus(tmp_path_factory.mktemp("hostile"))


@pytest.fixture(scope="module")
def base_config(corpus) -> Path:
    tree = {
        "data": {"hierarchy": str(corpus / "hierarchy.csv"), "workers": 0},
        "encoder": {"name": "resnet18", "input_size": 32, "freeze": True},
        "head": {"heads": 2, "hidden": 8},
        "loss": {"name": "rare_node"},
        "train": {
            "epochs": 1,
            "batch_size": 4,
            "progress": False,
            "bf16": False,
            "cache_dir": str(corpus / "cache"),
        },
    }
    path = corpus / "base.yaml"
    path.write_text(yaml.safe_dump(tree))
    return path


def fails(capsys, argv: list[str], *fragments: str) -> str:
    """The command exits with status 2 and an error message containing every fragment."""
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert "error:" in error and "Traceback" not in error
    for fragment in fragments:
        assert fragment in error, (fragment, error)
    return error


def test_the_corpus_has_every_case(corpus):
    for name in CASES:
        assert (corpus / name).exists(), name


@pytest.mark.parametrize(
    ("name", "fragments"),
    [
        ("hierarchy_cycle.csv", ["cycle"]),
        ("hierarchy_duplicates.csv", ["A > B"]),
        ("hierarchy_orphan.csv", ["Z"]),
    ],
)
def test_bad_hierarchies_are_refused(corpus, capsys, name, fragments):
    fails(capsys, ["hierarchy", "validate", str(corpus / name)], name, *fragments)


@pytest.mark.parametrize(
    ("name", "fragments"),
    [
        ("config_unknown_key.yaml", ["train.epochz", "epochs"]),
        ("config_wrong_type.yaml", ["train.epochs", "three"]),
        ("config_not_yaml.yaml", ["not valid YAML"]),
    ],
)
def test_bad_configs_are_refused(corpus, capsys, name, fragments):
    fails(capsys, ["train", "--config", str(corpus / name), "--out", str(corpus / "never")], name, *fragments)


@pytest.mark.parametrize(
    ("name", "fragments"),
    [
        ("manifest_unknown_label.csv", ["Substrate > Mud", "3"]),
        ("manifest_duplicates.csv", ["rows 2, 3", "set data.on_duplicate: merge in the config"]),
        ("manifest_latin1.csv", ["UTF-8", "line 3"]),
        ("manifest_empty.csv", ["empty"]),
        ("manifest_header_only.csv", ["no image rows"]),
        ("manifest_escape.csv", ["outside", "allow_outside_root"]),
    ],
)
def test_bad_manifests_stop_before_training(corpus, base_config, capsys, name, fragments):
    argv = [
        "train",
        "--config",
        str(base_config),
        "--set",
        f"data.manifest={corpus / name}",
        "--out",
        str(corpus / "runs" / name),
    ]
    fails(capsys, argv, name, *fragments)


def test_bad_images_are_reported_and_skipped_or_stop_the_run(corpus, base_config, capsys):
    manifest = corpus / "manifest_bad_images.csv"
    manifest.write_text(manifest.read_text().replace(",train\n", "\n").replace("labels,split", "labels"))
    argv = [
        "train",
        "--config",
        str(base_config),
        "--set",
        f"data.manifest={manifest}",
        "--out",
        str(corpus / "runs" / "bad_images"),
    ]
    fails(capsys, argv, "4 of 10 images", "truncated.jpg", "data.max_bad_fraction")
    assert main([*argv, "--set", "data.max_bad_fraction=0.5"]) == 0
    problems = pd.read_csv(corpus / "runs" / "bad_images" / "problems.csv")
    reported = {Path(p).name for p in problems["image"]}
    assert reported == {"truncated.jpg", "empty.jpg", "bomb.png", "not_an_image.jpg"}  # converted: kept
    assert problems["reason"].str.len().min() > 5
    assert json.loads((corpus / "runs" / "bad_images" / "metrics.json").read_text())["skipped_images"] == 4


def test_a_missing_image_is_reported(corpus, base_config, capsys):
    argv = [
        "train",
        "--config",
        str(base_config),
        "--set",
        f"data.manifest={corpus / 'manifest_missing_file.csv'}",
        "--set",
        "data.max_bad_fraction=0.6",
        "--out",
        str(corpus / "runs" / "missing"),
    ]
    fails(capsys, argv, "val")  # one good image left: nothing to validate on, said plainly


def test_rasters_without_crs_or_valid_pixels(corpus, base_config, capsys):
    checkpoint = corpus / "runs" / "bad_images" / "best.pt"
    if not checkpoint.exists():
        pytest.skip("needs the checkpoint of test_bad_images_are_reported_and_skipped_or_stop_the_run")
    fails(
        capsys,
        [
            "predict-tiles",
            "--checkpoint",
            str(checkpoint),
            "--raster",
            str(corpus / "raster_no_crs.tif"),
            "--out",
            str(corpus / "maps" / "no_crs"),
        ],
        "no CRS",
    )
    out = corpus / "maps" / "nodata"
    assert (
        main(
            [
                "predict-tiles",
                "--checkpoint",
                str(checkpoint),
                "--raster",
                str(corpus / "raster_all_nodata.tif"),
                "--out",
                str(out),
                "--tile-size",
                "8",
                "--workers",
                "0",
                "--no-progress",
            ]
        )
        == 0
    )
    summary = json.loads(capsys.readouterr().out)
    assert summary["predicted"] == 0 and summary["skipped"] == {"skipped: too much nodata": 4}
    with rasterio.open(out / "classes.tif") as classes:
        assert (classes.read(1) == classes.nodata).all()
    out = corpus / "maps" / "nan"
    assert (
        main(
            [
                "predict-tiles",
                "--checkpoint",
                str(checkpoint),
                "--raster",
                str(corpus / "raster_nan_no_tag.tif"),
                "--out",
                str(out),
                "--tile-size",
                "8",
                "--cell",
                "1",
                "--workers",
                "0",
                "--no-progress",
            ]
        )
        == 0
    )
    with rasterio.open(out / "classes.tif") as classes:
        data = classes.read(1)
    assert (data[4:8, 4:8] == 0).all() and (data[:4] != 0).all()  # the NaN hole is nodata, the rest mapped


def test_points_outside_the_raster_are_reported(corpus, capsys):
    out = corpus / "chips"
    assert (
        main(
            [
                "chips",
                "--raster",
                str(corpus / "raster_nan_no_tag.tif"),
                "--points",
                str(corpus / "points_outside.csv"),
                "--crs",
                "EPSG:32630",
                "--size",
                "4",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out.splitlines()[0]) == {"chips": 1, "outside": 2, "nodata": 0}
    assert list(pd.read_csv(out / "problems.csv")["reason"]) == ["outside the raster"] * 2


class _Payload:
    """Unpickling this would run a shell command (write a marker file)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_a_checkpoint_that_would_run_code_is_refused_without_running_it(tmp_path, capsys):
    import torch

    marker = tmp_path / "pwned"
    torch.save({"model": _Payload(marker)}, tmp_path / "evil.pt")  # a pickle that calls os.system
    fails(
        capsys,
        [
            "predict",
            "--checkpoint",
            str(tmp_path / "evil.pt"),
            "--images",
            str(tmp_path),
            "--out",
            str(tmp_path / "p.csv"),
        ],
        "evil.pt",
    )
    assert not marker.exists()


def test_a_truncated_checkpoint_is_reported_by_every_command(corpus, tmp_path, capsys):
    good = corpus / "runs" / "bad_images" / "best.pt"
    if not good.exists():
        pytest.skip("needs the checkpoint of test_bad_images_are_reported_and_skipped_or_stop_the_run")
    broken = tmp_path / "broken.pt"
    broken.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    for argv in (
        [
            "predict",
            "--checkpoint",
            str(broken),
            "--images",
            str(corpus / "images"),
            "--out",
            str(tmp_path / "p.csv"),
        ],
        ["evaluate", "--checkpoint", str(broken), "--manifest", str(corpus / "manifest_missing_file.csv")],
        [
            "predict-tiles",
            "--checkpoint",
            str(broken),
            "--raster",
            str(corpus / "raster_nan_no_tag.tif"),
            "--out",
            str(tmp_path / "maps"),
        ],
    ):
        fails(capsys, argv, "broken.pt", "truncated or corrupt")
