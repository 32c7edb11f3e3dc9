"""Georeferenced tiles: grids, masks, band scaling, predict-tiles outputs, resume, mosaics, labels."""

from __future__ import annotations

import json
import sqlite3
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from rasterio.transform import Affine, from_origin

from seabed_hmc.config import load_config
from seabed_hmc.data.geo import (
    BandSettings,
    RasterError,
    mosaic_vrt,
    raster_info,
    read_window,
    resolve_bands,
    tile_grid,
)
from seabed_hmc.data.geo_labels import (
    read_class_table,
    read_points,
    write_label_tiles,
    write_point_chips,
)
from seabed_hmc.data.synthetic import make_synthetic_seafloor
from seabed_hmc.engine.checkpoint import read_model
from seabed_hmc.engine.tiles import class_codes, predict_tiles
from seabed_hmc.engine.train import train
from tests.conftest import shared_data_path

UTM = "EPSG:32618"


def write_raster(path, data, crs=UTM, transform=None, nodata=None, alpha=None, **extra) -> Path:
    data = np.asarray(data)
    if data.ndim == 2:
        data = data[None]
    bands = [*data, alpha] if alpha is not None else list(data)
    transform = transform or from_origin(500_000, 2_800_000, 30, 30)
    profile = {
        "driver": "GTiff",
        "width": data.shape[2],
        "height": data.shape[1],
        "count": len(bands),
        "dtype": data.dtype.name,
        "crs": crs,
        "transform": transform,
        **extra,
    }
    if nodata is not None:
        profile["nodata"] = nodata
    with rasterio.open(path, "w", **profile) as target:
        target.write(np.stack(bands).astype(data.dtype))
        if alpha is not None:
            from rasterio.enums import ColorInterp

            target.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.alpha]
    return Path(path)


def textured(height, width, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(1, 255, (3, height, width), dtype=np.uint8)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("geo_model")
    manifest = make_synthetic_seafloor(root / "data", images=30, size=32, seed=3)
    config = load_config(
        None,
        [
            f"data.manifest={manifest}",
            f"data.hierarchy={manifest.parent / 'hierarchy.csv'}",
            "data.workers=0",
            "encoder.name=resnet18",
            "encoder.input_size=32",
            "encoder.freeze=true",
            "loss.name=rare_node",
            "head.heads=3",
            "head.hidden=16",
            "train.epochs=1",
            "train.batch_size=8",
            "train.progress=false",
            "train.bf16=false",
            f"train.cache_dir={root / 'cache'}",
            f"out={root / 'run'}",
        ],
    )
    train(config)
    return root / "run" / "best.pt"


# ------------------------------------------------------------------------------------------- grids
@settings(max_examples=40, deadline=None)
@given(
    height=st.integers(1, 90),
    width=st.integers(1, 90),
    size=st.integers(1, 40),
    stride_share=st.floats(0.3, 1.0),
)
def test_grid_covers_every_pixel_and_stays_inside(tmp_path_factory, height, width, size, stride_share):
    info = raster_info(grid_raster(tmp_path_factory, height, width))
    stride = max(1, int(size * stride_share))
    grid = tile_grid(info, size, stride)
    covered = np.zeros((height, width), dtype=int)
    for row, col, h, w in grid.windows:
        assert row >= 0 and col >= 0 and row + h <= height and col + w <= width
        assert h == min(size, height) and w == min(size, width)
        covered[row : row + h, col : col + w] += 1
    assert covered.min() >= 1  # full edge coverage
    rows = sorted({int(r) for r in grid.windows[:, 0]})
    assert rows[-1] + min(size, height) == height  # the last row of tiles ends on the edge
    assert all(b - a <= stride for a, b in zip(rows, rows[1:], strict=False))


_RASTERS: dict = {}


def grid_raster(factory, height, width) -> Path:
    key = (height, width)
    if key not in _RASTERS:
        _RASTERS[key] = write_raster(factory.mktemp("grid") / "r.tif", np.zeros((1, height, width), np.uint8))
    return _RASTERS[key]


def test_size_and_stride_in_crs_units_and_geographic_crs(tmp_path):
    utm = raster_info(write_raster(tmp_path / "utm.tif", textured(50, 70)))  # 30 m pixels
    grid = tile_grid(utm, 600, 300, units="crs")
    assert grid.size == (20, 20) and grid.stride == (10, 10)
    geographic = write_raster(
        tmp_path / "geo.tif",
        textured(40, 40),
        crs="EPSG:4326",
        transform=from_origin(-79.0, 25.5, 0.001, 0.001),
    )
    grid = tile_grid(raster_info(geographic), 0.01, units="crs")
    assert grid.size == (10, 10) and len(grid) == 16
    west, south, east, north = grid.bounds(0)
    assert (west, north) == pytest.approx((-79.0, 25.5)) and east - west == pytest.approx(0.01)
    with pytest.raises(ValueError, match="less than one pixel"):
        tile_grid(raster_info(geographic), 0.0001, units="crs")


def test_region_of_interest(tmp_path):
    info = raster_info(write_raster(tmp_path / "r.tif", textured(100, 100)))
    # 30 m pixels from (500000, 2800000): rows 10..40, cols 20..60
    roi = (500_000 + 20 * 30, 2_800_000 - 40 * 30, 500_000 + 60 * 30, 2_800_000 - 10 * 30)
    grid = tile_grid(info, 16, roi=roi)
    rows = grid.windows[:, 0]
    cols = grid.windows[:, 1]
    assert rows.min() == 10 and (rows + grid.windows[:, 2]).max() == 40
    assert cols.min() == 20 and (cols + grid.windows[:, 3]).max() == 60
    with pytest.raises(RasterError, match="does not overlap"):
        tile_grid(info, 16, roi=(0, 0, 10, 10))


def test_south_up_bounds(tmp_path):
    transform = Affine(30, 0, 500_000, 0, 30, 2_700_000)  # row 0 is the southern edge
    info = raster_info(write_raster(tmp_path / "s.tif", textured(40, 40), transform=transform))
    grid = tile_grid(info, 20)
    west, south, east, north = grid.bounds(0)
    assert (west, south, east, north) == pytest.approx((500_000, 2_700_000, 500_600, 2_700_600))


# ------------------------------------------------------------------------------------------- masks
def test_masks_from_nodata_alpha_nan_and_a_user_value(tmp_path):
    data = textured(8, 8)
    data[:, :2, :] = 0
    nodata = raster_info(write_raster(tmp_path / "n.tif", data, nodata=0))
    alpha = np.full((8, 8), 255, np.uint8)
    alpha[:, :3] = 0
    with_alpha = raster_info(write_raster(tmp_path / "a.tif", textured(8, 8), alpha=alpha))
    floats = textured(8, 8).astype(np.float32)
    floats[:, 5:, :] = np.nan
    nan = raster_info(write_raster(tmp_path / "f.tif", floats))  # no nodata tag
    window = rasterio.windows.Window(0, 0, 8, 8)
    cases = [
        (nodata, BandSettings(), lambda v: v[:2].sum() == 0 and v[2:].all()),
        (with_alpha, BandSettings(), lambda v: v[:, :3].sum() == 0 and v[:, 3:].all()),
        (nan, BandSettings(), lambda v: v[5:].sum() == 0 and v[:5].all()),
    ]
    for info, band_settings, check in cases:
        with rasterio.open(info.path) as source:
            image, valid = read_window(source, window, resolve_bands(info, band_settings))
        assert image.shape == (8, 8, 3) and image.dtype == np.uint8
        assert check(valid), info.path
        assert image[~valid].max(initial=0) == 0
    user = textured(8, 8)
    user[:, 4, 4] = 7
    info = raster_info(write_raster(tmp_path / "u.tif", user))
    with rasterio.open(info.path) as source:
        _, valid = read_window(source, window, resolve_bands(info, BandSettings(nodata=7)))
    assert not valid[4, 4] and valid.sum() == 63
    assert with_alpha.alpha_band == 4 and resolve_bands(with_alpha, BandSettings()).bands == (1, 2, 3)


def test_band_selection_and_scaling(tmp_path):
    backscatter = np.linspace(-40, -5, 20 * 20, dtype=np.float32).reshape(1, 20, 20)  # dB, one band
    info = raster_info(write_raster(tmp_path / "b.tif", backscatter))
    resolved = resolve_bands(info, BandSettings())
    assert resolved.bands == (1,)
    low, high = resolved.scale[0]
    assert low == pytest.approx(np.percentile(backscatter, 2), rel=0.05)
    with rasterio.open(info.path) as source:
        image, _ = read_window(source, rasterio.windows.Window(0, 0, 20, 20), resolved)
    assert np.array_equal(image[..., 0], image[..., 2]) and image.min() == 0 and image.max() == 255
    wide = (np.arange(3 * 10 * 10, dtype=np.uint16).reshape(3, 10, 10) * 20).astype(np.uint16)
    info = raster_info(write_raster(tmp_path / "w.tif", wide))
    resolved = resolve_bands(info, BandSettings(bands=(3, 2, 1), scale=((0, 6000),) * 3))
    with rasterio.open(info.path) as source:
        image, _ = read_window(source, rasterio.windows.Window(0, 0, 10, 10), resolved)
    assert image[0, 0, 0] == int(float(wide[2, 0, 0]) * 255 / 6000)  # band 3 first
    with pytest.raises(RasterError, match="band numbers"):
        resolve_bands(info, BandSettings(bands=(1, 4, 2)))
    with pytest.raises(RasterError, match="2 \\(low, high\\) pairs"):
        resolve_bands(info, BandSettings(bands=(1, 2, 3), scale=((0, 1), (0, 1))))


def test_rasters_without_crs_or_valid_pixels_are_refused(tmp_path):
    path = tmp_path / "nocrs.tif"
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=4,
        height=4,
        count=1,
        dtype="uint8",
        transform=from_origin(0, 4, 1, 1),
    ) as target:
        target.write(np.ones((1, 4, 4), np.uint8))
    with pytest.raises(RasterError, match="no CRS"):
        raster_info(path)
    empty = raster_info(write_raster(tmp_path / "empty.tif", np.zeros((1, 6, 6), np.uint16), nodata=0))
    with pytest.raises(RasterError, match="no valid pixels"):
        resolve_bands(empty, BandSettings())
    with pytest.raises(FileNotFoundError):
        raster_info(tmp_path / "missing.tif")


# ----------------------------------------------------------------------------------- predict-tiles
def collar_raster(tmp_path, name="collar.tif", transform=None, crs=UTM) -> Path:
    data = textured(70, 90, seed=5)
    data[:, :, :10] = 0  # a nodata collar on the west side
    data[:, 60:, :] = 0  # and the south
    return write_raster(tmp_path / name, data, nodata=0, transform=transform, crs=crs)


def test_outputs_carry_the_grid_crs_and_nodata(checkpoint, tmp_path):
    raster = collar_raster(tmp_path)
    summary = predict_tiles(
        checkpoint, raster, tmp_path / "out", workers=0, progress=False, cell=16, max_invalid=1.0
    )
    with rasterio.open(raster) as source:
        transform, crs = source.transform, source.crs
        mask = source.dataset_mask() > 0
    for name in ("classes", "probabilities", "uncertainty"):
        with rasterio.open(tmp_path / "out" / f"{name}.tif") as output:
            assert output.crs == crs
            assert output.transform == transform @ Affine.scale(16)
            assert output.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
            nodata = output.read(1) == output.nodata
            # a cell is nodata exactly where its 16 x 16 input block has no valid pixel
            blocks = np.array(
                [
                    [mask[r * 16 : (r + 1) * 16, c * 16 : (c + 1) * 16].any() for c in range(nodata.shape[1])]
                    for r in range(nodata.shape[0])
                ]
            )
            assert np.array_equal(nodata, ~blocks), name
    assert nodata.shape == (5, 6) and nodata[4].all() and not nodata[0, 0]  # rows 64.. are collar
    with rasterio.open(tmp_path / "out" / "probabilities.tif") as output:
        assert output.count == len(pd.read_csv(tmp_path / "out" / "classes.csv")) - 2
        assert output.descriptions[0] == "Substrate"
        probabilities = output.read()
    assert probabilities.max() <= 255 and (probabilities[:, ~nodata] <= 254).all()
    with rasterio.open(tmp_path / "out" / "classes.tif") as output:
        assert output.colormap(1)[1][3] == 255
        assert output.tags()["decision"] == summary["decision"]
    assert summary["decision"].startswith("f1 (fit on val")  # the checkpoint's rule
    # each node's area: its own cells and its descendants', counted by brute force on classes.tif
    with rasterio.open(tmp_path / "out" / "classes.tif") as output:
        codes = output.read(1)
    classes = pd.read_csv(tmp_path / "out" / "classes.csv")
    hierarchy = read_model(checkpoint).built_hierarchy(str(checkpoint))
    cell_area = (30 * 16) ** 2  # 30 m pixels, 16-pixel cells, UTM metres
    mapped = int((codes > 0).sum())
    assert summary["mapped_cells"] == mapped and summary["cell_area_m2"] == cell_area
    for _, row in classes.iterrows():
        if 1 <= row["code"] <= len(hierarchy):
            node = row["code"] - 1
            below = [
                n + 1 for n in range(len(hierarchy)) if node in hierarchy.ancestors(n, include_self=True)
            ]
            cells = int(np.isin(codes, below).sum())
            assert row["cells"] == (codes == row["code"]).sum() and row["cells_with_descendants"] == cells
            assert row["area_m2"] == cells * cell_area and row["percent"] == pytest.approx(
                100 * cells / mapped
            )
    assert classes["cells"].sum() == codes.size
    quicklook = tmp_path / "out" / "quicklook.png"
    assert quicklook.stat().st_size > 5000 and quicklook.read_bytes()[:4] == b"\x89PNG"
    tiles = pd.read_csv(tmp_path / "out" / "tiles.csv", keep_default_na=False)
    assert len(tiles) == summary["tiles"] and summary["predicted"] + sum(summary["skipped"].values()) == len(
        tiles
    )
    assert {"west", "south", "east", "north", "lon_min", "lat_max", "paths", "probabilities"} <= set(
        tiles.columns
    )
    geojson = json.loads((tmp_path / "out" / "tiles.geojson").read_text())
    assert len(geojson["features"]) == len(tiles)
    lon, lat = geojson["features"][0]["geometry"]["coordinates"][0][0]
    assert -80 < lon < -70 and 20 < lat < 30  # UTM 18N near the test origin, in lon/lat


def test_pixel_cells_reproduce_the_input_grid_and_mask(checkpoint, tmp_path):
    raster = collar_raster(tmp_path)
    predict_tiles(checkpoint, raster, tmp_path / "out", workers=0, progress=False, cell=1, max_invalid=1.0)
    with rasterio.open(raster) as source, rasterio.open(tmp_path / "out" / "classes.tif") as output:
        assert output.bounds == source.bounds and output.transform == source.transform
        assert np.array_equal(output.read(1) != 0, source.dataset_mask() > 0)


def test_reader_processes_give_the_same_maps_as_the_main_process(checkpoint, tmp_path):
    """Tiles read in DataLoader workers (batched strip reads in each worker, the dataset pickled) give
    byte-identical maps and the same tile table as tiles read in the main process."""
    raster = collar_raster(tmp_path)
    for workers in (0, 2):
        predict_tiles(
            checkpoint, raster, tmp_path / f"w{workers}", workers=workers, progress=False, cell=8,
            stride=12, tile_size=16, max_invalid=0.9, batch_size=5,
        )  # fmt: skip
    for name in ("classes", "probabilities", "uncertainty"):
        with (
            rasterio.open(tmp_path / "w0" / f"{name}.tif") as a,
            rasterio.open(tmp_path / "w2" / f"{name}.tif") as b,
        ):
            assert np.array_equal(a.read(), b.read()), name
    table = [pd.read_csv(tmp_path / f"w{w}" / "tiles.csv", keep_default_na=False) for w in (0, 2)]
    pd.testing.assert_frame_equal(table[0], table[1])


def test_south_up_and_geographic_rasters(checkpoint, tmp_path):
    south_up = collar_raster(tmp_path, "s.tif", transform=Affine(30, 0, 500_000, 0, 30, 2_700_000))
    predict_tiles(checkpoint, south_up, tmp_path / "s", workers=0, progress=False, cell=1, max_invalid=1.0)
    with rasterio.open(south_up) as source, rasterio.open(tmp_path / "s" / "classes.tif") as output:
        assert output.transform == source.transform and output.transform.e > 0
        assert np.array_equal(output.read(1) != 0, source.dataset_mask() > 0)
    geographic = collar_raster(
        tmp_path, "g.tif", transform=from_origin(-79, 25.5, 0.0003, 0.0003), crs="EPSG:4326"
    )
    summary = predict_tiles(checkpoint, geographic, tmp_path / "g", workers=0, progress=False)
    tiles = pd.read_csv(tmp_path / "g" / "tiles.csv")
    assert summary["crs"] == "EPSG:4326"
    assert np.allclose(tiles["west"], tiles["lon_min"]) and np.allclose(tiles["north"], tiles["lat_max"])


def test_an_interrupted_run_resumes_to_the_same_maps(checkpoint, tmp_path):
    raster = collar_raster(tmp_path)
    options = {"workers": 0, "progress": False, "cell": 8, "stride": 16, "batch_size": 2, "save_every": 1}
    full = predict_tiles(checkpoint, raster, tmp_path / "full", **options)
    stopped = predict_tiles(checkpoint, raster, tmp_path / "part", stop_after=3, **options)
    assert stopped["tiles_done"] == 6 and not (tmp_path / "part" / "classes.tif").exists()
    resumed = predict_tiles(checkpoint, raster, tmp_path / "part", **options)
    assert resumed["tiles"] == full["tiles"] == len(pd.read_csv(tmp_path / "part" / "tiles.csv"))
    for name in ("classes", "probabilities", "uncertainty"):
        with (
            rasterio.open(tmp_path / "full" / f"{name}.tif") as a,
            rasterio.open(tmp_path / "part" / f"{name}.tif") as b,
        ):
            assert np.allclose(a.read(), b.read(), atol=1e-6), name
    predict_tiles(checkpoint, raster, tmp_path / "part2", stop_after=1, **options)
    with pytest.raises(RuntimeError, match="other settings"):
        predict_tiles(checkpoint, raster, tmp_path / "part2", **{**options, "cell": 4})


def test_several_rasters_are_mosaicked(checkpoint, tmp_path):
    raster = collar_raster(tmp_path)
    with rasterio.open(raster) as source:
        data, transform = source.read(), source.transform
    west = write_raster(tmp_path / "w.tif", data[:, :, :48], nodata=0, transform=transform)
    east = write_raster(
        tmp_path / "e.tif", data[:, :, 48:], nodata=0, transform=transform @ Affine.translation(48, 0)
    )
    options = {"workers": 0, "progress": False, "cell": 1, "max_invalid": 1.0}
    predict_tiles(checkpoint, raster, tmp_path / "one", **options)
    predict_tiles(checkpoint, [west, east], tmp_path / "two", **options)
    with (
        rasterio.open(tmp_path / "one" / "probabilities.tif") as a,
        rasterio.open(tmp_path / "two" / "probabilities.tif") as b,
    ):
        assert a.transform == b.transform and a.crs == b.crs
        assert np.array_equal(a.read(), b.read())
    other = write_raster(tmp_path / "o.tif", data, nodata=0, crs="EPSG:32617")
    with pytest.raises(RasterError, match="cannot be mosaicked"):
        mosaic_vrt([raster, other], tmp_path / "m.vrt")


def test_class_codes_take_the_deepest_node_the_decision_predicts():
    from seabed_hmc.decisions import Decision, fixed_decision
    from seabed_hmc.hierarchy import Hierarchy

    hierarchy = Hierarchy(["a", "b", "c", "d"], [[], ["a"], ["b"], ["b"]], excluded=[])  # depths 0 1 2 2
    probability = np.array([[[0.9]], [[0.8]], [[0.6]], [[0.2]]])  # (nodes, H, W)
    assert class_codes(probability, hierarchy, fixed_decision(hierarchy, 0.5))[0, 0] == 3  # c -> code 3
    assert class_codes(probability, hierarchy, fixed_decision(hierarchy, 0.95))[0, 0] == 5  # abstain
    rare = Decision("f1", np.array([0.5, 0.5, 0.7, 0.1]), ["fitted"] * 4)  # d has a low threshold
    assert class_codes(probability, hierarchy, rare)[0, 0] == 4  # d passes; c does not


@pytest.mark.slow
def test_torchrun_shards_tiles_and_matches_one_process(checkpoint, tmp_path):
    raster = collar_raster(tmp_path)
    args = [
        "--checkpoint",
        str(checkpoint),
        "--raster",
        str(raster),
        "--cell",
        "8",
        "--stride",
        "16",
        "--workers",
        "0",
        "--no-progress",
        "--device",
        "cpu",  # two CPU processes (gloo), also on a machine with one GPU
    ]
    single = subprocess.run(
        [sys.executable, "-m", "seabed_hmc", "predict-tiles", *args, "--out", str(tmp_path / "one")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert single.returncode == 0, single.stderr
    torchrun = Path(sys.executable).with_name("torchrun")
    sharded = subprocess.run(
        [
            str(torchrun),
            "--nproc_per_node=2",
            "--master_port=29533",
            "-m",
            "seabed_hmc",
            "predict-tiles",
            *args,
            "--out",
            str(tmp_path / "two"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert sharded.returncode == 0, sharded.stderr[-3000:]
    assert json.loads((tmp_path / "two" / "summary.json").read_text())["ranks"] == 2
    for name in ("classes", "probabilities"):
        with (
            rasterio.open(tmp_path / "one" / f"{name}.tif") as a,
            rasterio.open(tmp_path / "two" / f"{name}.tif") as b,
        ):
            assert np.array_equal(a.read(), b.read()), name


# ------------------------------------------------------------------------------------------- labels
def test_point_chips_reproject_and_report_outside_and_nodata(tmp_path):
    raster = collar_raster(tmp_path)
    info = raster_info(raster)
    inside = info.transform @ (40.5, 30.5)  # the centre of col 40, row 30: valid
    collar = info.transform @ (3.5, 30.5)  # in the nodata collar
    from rasterio.warp import transform as warp

    lon, lat = warp(UTM, "EPSG:4326", [inside[0], collar[0], 0.0], [inside[1], collar[1], 0.0])
    points = pd.DataFrame(
        {
            "x": lon,
            "y": lat,
            "labels": ["Substrate > Rock", "Substrate > Sand", "Biota"],
            "station": ["a", "b", "c"],
        }
    )
    points.to_csv(tmp_path / "points.csv", index=False)
    frame = read_points(tmp_path / "points.csv", crs="EPSG:4326")
    counts = write_point_chips(raster, frame, tmp_path / "chips", chip_size=16)
    assert counts == {"chips": 1, "outside": 1, "nodata": 1}
    manifest = pd.read_csv(tmp_path / "chips" / "manifest.csv")
    assert manifest.loc[0, "station"] == "a" and (manifest.loc[0, "row"], manifest.loc[0, "col"]) == (30, 40)
    with rasterio.open(raster) as source:
        expected = source.read(window=rasterio.windows.Window(32, 22, 16, 16)).transpose(1, 2, 0)
    from PIL import Image

    assert np.array_equal(np.asarray(Image.open(tmp_path / "chips" / manifest.loc[0, "image"])), expected)
    problems = pd.read_csv(tmp_path / "chips" / "problems.csv")
    assert set(problems["reason"].str.split(" ").str[0]) == {"outside", "on"}


def test_points_from_geojson_and_geopackage(tmp_path):
    geojson = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [-78.9, 25.4]},
                "properties": {"labels": "Biota"},
            }
        ],
    }
    (tmp_path / "p.geojson").write_text(json.dumps(geojson))
    frame = read_points(tmp_path / "p.geojson")
    assert frame.loc[0, ["x", "y", "crs", "labels"]].tolist() == [-78.9, 25.4, "EPSG:4326", "Biota"]
    path = tmp_path / "p.gpkg"
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE gpkg_spatial_ref_sys "
            "(srs_name, srs_id, organization, organization_coordsys_id, definition)"
        )
        db.execute("INSERT INTO gpkg_spatial_ref_sys VALUES ('WGS 84 / UTM 18N', 32618, 'EPSG', 32618, '')")
        db.execute("CREATE TABLE gpkg_contents (table_name, data_type, identifier, srs_id)")
        db.execute("INSERT INTO gpkg_contents VALUES ('stations', 'features', 'stations', 32618)")
        db.execute(
            "CREATE TABLE gpkg_geometry_columns (table_name, column_name, geometry_type_name, srs_id, z, m)"
        )
        db.execute("INSERT INTO gpkg_geometry_columns VALUES ('stations', 'geom', 'POINT', 32618, 0, 0)")
        db.execute("CREATE TABLE stations (fid INTEGER PRIMARY KEY, geom BLOB, labels TEXT)")
        header = b"GP" + bytes([0, 0b00000011]) + struct.pack("<i", 32618) + struct.pack("<4d", 1, 2, 3, 4)
        blob = header + struct.pack("<BIdd", 1, 1, 500_123.5, 2_799_000.25)
        db.execute("INSERT INTO stations (geom, labels) VALUES (?, ?)", (blob, "Substrate"))
    frame = read_points(path)
    assert frame.loc[0, ["x", "y", "crs", "labels"]].tolist() == [
        500_123.5,
        2_799_000.25,
        "EPSG:32618",
        "Substrate",
    ]
    (tmp_path / "bad.csv").write_text("x,y,labels\n1,oops,A\n")
    with pytest.raises(ValueError, match="row 1 has a non-numeric y"):
        read_points(tmp_path / "bad.csv", crs="EPSG:4326")
    with pytest.raises(ValueError, match="CRS is unknown"):
        read_points(tmp_path / "bad.csv")


def test_label_raster_tiles_get_the_classes_covering_enough_of_them(tmp_path):
    raster = write_raster(tmp_path / "img.tif", textured(32, 32))
    ids = np.zeros((32, 32), np.uint8)
    ids[:, :16] = 1  # left half class 1
    ids[:16, 16:] = 2  # top right class 2
    ids[16:, 16:] = 9  # bottom right: an id missing from the table
    ids[0:2, 0:2] = 3  # a sliver of class 3 in the first tile
    labels = write_raster(tmp_path / "ids.tif", ids, nodata=255)
    pd.DataFrame({"id": [1, 2, 3], "path": ["Substrate > Sand", "Biota > Kelp", "Biota > Sponges"]}).to_csv(
        tmp_path / "classes.csv", index=False
    )
    counts = write_label_tiles(
        raster, labels, read_class_table(tmp_path / "classes.csv"), tmp_path / "tiles", 16, min_fraction=0.1
    )
    manifest = pd.read_csv(tmp_path / "tiles" / "manifest.csv")
    assert manifest["labels"].tolist() == ["Substrate > Sand", "Biota > Kelp", "Substrate > Sand"]
    assert counts == {"tiles": 3, "skipped": 1, "unknown_ids": 1}
    problems = pd.read_csv(tmp_path / "tiles" / "problems.csv")["reason"].tolist()
    assert any("class id 9" in p for p in problems) and any("no known class" in p for p in problems)
    shifted = write_raster(tmp_path / "shifted.tif", ids, transform=from_origin(0, 0, 30, 30))
    with pytest.raises(RasterError, match="not on the grid"):
        write_label_tiles(raster, shifted, {1: "A"}, tmp_path / "x", 16)


def test_chips_refuse_the_label_raster_as_imagery_and_warn_when_it_looks_like_one(tmp_path, caplog):
    ids = np.zeros((32, 32), np.uint8)
    ids[:, :16], ids[:, 16:] = 1, 2
    labels = write_raster(tmp_path / "ids.tif", ids)
    classes = {1: "Substrate > Sand", 2: "Biota > Kelp"}
    with pytest.raises(RasterError, match="the image raster and the label raster are the same file"):
        write_label_tiles(labels, labels, classes, tmp_path / "same", 16)
    copy = write_raster(tmp_path / "copy.tif", ids)  # the class ids again, under another name
    with caplog.at_level("WARNING", logger="seabed_hmc"):
        counts = write_label_tiles(copy, labels, classes, tmp_path / "copy", 16)
    assert (
        "looks like a label raster (one uint8 band with 2 distinct values, all class ids)"
        in counts["warning"]
    )
    assert "looks like a label raster" in caplog.text
    points = pd.DataFrame(
        {"x": [500_000 + 30 * 8.5], "y": [2_800_000 - 30 * 8.5], "crs": [UTM], "labels": ["A"]}
    )
    assert "looks like a label raster" in write_point_chips(copy, points, tmp_path / "pts", 8)["warning"]
    # imagery: a one-band 8-bit backscatter mosaic with many grey levels is not flagged
    grey = write_raster(tmp_path / "grey.tif", textured(32, 32)[0])
    assert "warning" not in write_label_tiles(grey, labels, classes, tmp_path / "grey", 16)
    rgb = write_raster(tmp_path / "rgb.tif", textured(32, 32))
    assert "warning" not in write_label_tiles(rgb, labels, classes, tmp_path / "rgb", 16)


def test_cli_chips_and_predict_tiles(checkpoint, tmp_path, capsys):
    from seabed_hmc.cli import main

    raster = collar_raster(tmp_path)
    out = tmp_path / "out"
    assert (
        main(
            [
                "predict-tiles",
                "--checkpoint",
                str(checkpoint),
                "--raster",
                str(raster),
                "--out",
                str(out),
                "--workers",
                "0",
                "--no-progress",
                "--tile-size",
                "960",
                "--units",
                "crs",
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["tiles"] == len(pd.read_csv(out / "tiles.csv"))
    # the same settings from a YAML file build the same TileConfig: the same tiles and class map
    settings = tmp_path / "tiles.yaml"
    settings.write_text("tile_size: 960\nunits: crs\nworkers: 0\nprogress: false\nbatch_size: 7\n")
    from_file = tmp_path / "from_file"
    common = ["predict-tiles", "--checkpoint", str(checkpoint), "--raster", str(raster)]
    assert main([*common, "--out", str(from_file), "--config", str(settings), "--batch-size", "32"]) == 0
    capsys.readouterr()
    pd.testing.assert_frame_equal(pd.read_csv(from_file / "tiles.csv"), pd.read_csv(out / "tiles.csv"))
    with rasterio.open(out / "classes.tif") as a, rasterio.open(from_file / "classes.tif") as b:
        np.testing.assert_array_equal(a.read(), b.read())
    # a misspelt key fails before the checkpoint or raster is opened, naming the key it meant
    settings.write_text("tile_sise: 960\n")
    nowhere = ["--checkpoint", "missing.pt", "--raster", "missing.tif", "--out", str(tmp_path / "x")]
    assert main(["predict-tiles", *nowhere, "--config", str(settings)]) == 2
    error = capsys.readouterr().err
    assert "tile_sise" in error and "tile_size" in error and not (tmp_path / "x").exists()
    assert (
        main(
            [
                "predict-tiles",
                "--checkpoint",
                str(checkpoint),
                "--raster",
                str(tmp_path / "nope.tif"),
                "--out",
                str(out),
            ]
        )
        == 2
    )
    assert "does not exist" in capsys.readouterr().err
    pd.DataFrame({"x": [500_000 + 40 * 30], "y": [2_800_000 - 30 * 30], "labels": ["Biota"]}).to_csv(
        tmp_path / "p.csv", index=False
    )
    assert (
        main(
            [
                "chips",
                "--raster",
                str(raster),
                "--points",
                str(tmp_path / "p.csv"),
                "--crs",
                UTM,
                "--out",
                str(tmp_path / "chips"),
                "--size",
                "8",
            ]
        )
        == 0
    )
    assert len(pd.read_csv(tmp_path / "chips" / "manifest.csv")) == 1


# ---------------------------------------------------------------------------------------- real data
@pytest.mark.parametrize("name", ["RGB.byte.tif", "RGBA.byte.tif"])
def test_landsat_scene_with_collar_or_alpha(checkpoint, tmp_path, name):
    raster = shared_data_path("landsat_bahamas", name)
    predict_tiles(
        checkpoint, raster, tmp_path / "out", workers=0, progress=False, cell=1, max_invalid=1.0, tile_size=64
    )
    with rasterio.open(raster) as source, rasterio.open(tmp_path / "out" / "classes.tif") as output:
        assert output.crs == source.crs and output.bounds == source.bounds
        valid = source.dataset_mask() > 0
        assert (~valid).mean() > 0.2  # the scene's collar
        assert np.array_equal(output.read(1) != 0, valid)


def test_landsat_four_tiles_together(checkpoint, tmp_path):
    rasters = [shared_data_path("landsat_bahamas", f"rgb{i}.tif") for i in range(1, 5)]
    summary = predict_tiles(checkpoint, rasters, tmp_path / "out", workers=0, progress=False, tile_size=64)
    with rasterio.open(shared_data_path("landsat_bahamas", "RGB.byte.tif")) as whole:
        with rasterio.open(tmp_path / "out" / "classes.tif") as output, rasterio.open(rasters[0]) as first:
            assert output.crs == first.crs  # the tiles' own CRS (a WKT equivalent to the scene's EPSG code)
            assert output.transform == whole.transform @ Affine.scale(64)
            assert output.bounds.left == whole.bounds.left and output.bounds.top == whole.bounds.top
            assert output.bounds.right >= whole.bounds.right and output.bounds.bottom <= whole.bounds.bottom
            assert output.read(1)[0, 0] == 0  # the north-west corner is collar
    assert summary["predicted"] > 0 and summary["skipped"]


def test_label_tiles_train_through_the_ordinary_train_command(tmp_path):
    from seabed_hmc.cli import main

    raster = write_raster(tmp_path / "img.tif", textured(64, 64))
    ids = np.ones((64, 64), np.uint8)
    ids[:, 32:] = 2
    labels = write_raster(tmp_path / "ids.tif", ids)
    pd.DataFrame({"id": [1, 2], "path": ["Substrate > Sand", "Substrate > Rock"]}).to_csv(
        tmp_path / "classes.csv", index=False
    )
    write_label_tiles(raster, labels, read_class_table(tmp_path / "classes.csv"), tmp_path / "tiles", 16)
    code = main(
        [
            "train",
            "--config",
            str(Path(__file__).parents[1] / "configs" / "quickstart.yaml"),
            "--set",
            f"data.manifest={tmp_path / 'tiles' / 'manifest.csv'}",
            "--set",
            "data.hierarchy=null",
            "--set",
            "data.workers=0",
            "--set",
            "train.epochs=1",
            "--set",
            "encoder.input_size=32",
            "--set",
            "head.heads=2",
            "--set",
            "train.progress=false",
            "--out",
            str(tmp_path / "run"),
        ]
    )
    assert code == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["skipped_images"] == 0 and 0 <= metrics["val"]["au_prc"] <= 1


@settings(max_examples=60, deadline=None)
@given(
    height=st.integers(5, 60),
    width=st.integers(5, 60),
    size=st.integers(2, 20),
    stride_share=st.floats(0.3, 1.0),
    cell=st.integers(1, 9),
    seed=st.integers(0, 1000),
    density=st.sampled_from([0.3, 1.0]),  # 1.0: a fully valid tile (the fast path)
)
def test_cells_of_a_tile_match_brute_force(
    tmp_path_factory, height, width, size, stride_share, cell, seed, density
):
    """Which output cells a tile feeds (their centres inside the tile) and which of them hold a valid
    pixel of the tile, against a per-cell, per-pixel loop."""
    from seabed_hmc.engine.tiles import OutputGrid, summarise_tile

    info = raster_info(grid_raster(tmp_path_factory, height, width))
    grid = tile_grid(info, size, max(1, int(size * stride_share)))
    output = OutputGrid(grid, (cell, cell))
    rng = np.random.default_rng(seed)
    index = int(rng.integers(len(grid)))
    row, col, h, w = (int(v) for v in grid.windows[index])
    valid = np.zeros(grid.size, dtype=bool)
    valid[:h, :w] = rng.random((h, w)) < density
    summary = summarise_tile(output, valid, index)
    r0, r1, c0, c1 = summary["cell_span"].tolist()
    flags = summary["cell_valid"].numpy()
    for cr in range(output.height):
        for cc in range(output.width):
            centre_r, centre_c = (cr + 0.5) * cell, (cc + 0.5) * cell
            inside = row <= centre_r < row + h and col <= centre_c < col + w
            assert (r0 <= cr < r1 and c0 <= cc < c1) == inside
            if inside:
                pixels = valid[
                    max(cr * cell - row, 0) : max(min((cr + 1) * cell, row + h) - row, 0),
                    max(cc * cell - col, 0) : max(min((cc + 1) * cell, col + w) - col, 0),
                ]
                assert flags[cr - r0, cc - c0] == pixels.any()


@settings(max_examples=30, deadline=None)
@given(
    size=st.integers(3, 12), stride_share=st.floats(0.3, 1.0), cell=st.integers(1, 4), seed=st.integers(0, 99)
)
def test_overlapping_tiles_are_averaged_per_cell(tmp_path_factory, size, stride_share, cell, seed):
    """The accumulated map is, per cell, the mean of the probabilities of the tiles whose window holds
    the cell's centre and a valid pixel of the cell (brute force over all tiles)."""
    from seabed_hmc.engine.tiles import Accumulator, OutputGrid, summarise_tile

    info = raster_info(grid_raster(tmp_path_factory, 23, 17))
    grid = tile_grid(info, size, max(1, int(size * stride_share)))
    output = OutputGrid(grid, (cell, cell))
    rng = np.random.default_rng(seed)
    valid_raster = rng.random((23, 17)) < 0.8
    probabilities = rng.random((len(grid), 2)).astype(np.float32)
    accumulator = Accumulator(2, output.height, output.width)
    for index, (row, col, h, w) in enumerate(grid.windows):
        valid = np.zeros(grid.size, dtype=bool)
        valid[:h, :w] = valid_raster[row : row + h, col : col + w]
        summary = summarise_tile(output, valid, index)
        accumulator.add(
            summary["cell_span"].numpy(),
            summary["cell_valid"].numpy(),
            probabilities[index],
            probabilities[index],
        )
    for cr in range(output.height):
        for cc in range(output.width):
            centre_r, centre_c = (cr + 0.5) * cell, (cc + 0.5) * cell
            block = valid_raster[cr * cell : (cr + 1) * cell, cc * cell : (cc + 1) * cell]
            feeding = [
                i
                for i, (row, col, h, w) in enumerate(grid.windows)
                if row <= centre_r < row + h
                and col <= centre_c < col + w
                and valid_raster[
                    max(cr * cell, row) : min((cr + 1) * cell, row + h),
                    max(cc * cell, col) : min((cc + 1) * cell, col + w),
                ].any()
            ]
            assert accumulator.weight[cr, cc] == len(feeding)
            assert accumulator.valid[cr, cc] == bool(feeding)
            if feeding:
                mean = probabilities[feeding].mean(axis=0)
                assert np.allclose(accumulator.probability[:, cr, cc] / len(feeding), mean, atol=1e-5)
            elif not block.any():
                assert accumulator.probability[:, cr, cc].sum() == 0


@settings(max_examples=25, deadline=None)
@given(
    kind=st.sampled_from(["nodata", "alpha", "nan", "uint16", "plain"]),
    height=st.integers(3, 40),
    width=st.integers(3, 40),
    size=st.integers(2, 16),
    stride_share=st.floats(0.3, 1.0),
    seed=st.integers(0, 1000),
)
def test_batched_reads_equal_tile_by_tile_reads(
    tmp_path_factory, kind, height, width, size, stride_share, seed
):
    """A batch read as row strips (TileDataset.__getitems__) gives exactly the items of one read per
    tile: pixels, masks, cell summaries, with nodata, alpha, NaN, 16-bit and edge or overlapping tiles;
    and reading straight into a batch (read_batch) gives exactly those items collated."""
    from torch.utils.data import default_collate

    from seabed_hmc.data.geo import TileBatches, TileDataset
    from seabed_hmc.engine.tiles import OutputGrid, summarise_tile

    rng = np.random.default_rng(seed)
    folder = tmp_path_factory.mktemp("batched")
    data = textured(height, width, seed)
    holes = rng.random((height, width)) < 0.2
    extra = {}
    if kind == "nodata":
        data[:, holes] = 0
        extra["nodata"] = 0
    elif kind == "alpha":
        extra["alpha"] = np.where(holes, 0, 255).astype(np.uint8)
    elif kind == "nan":
        data = data.astype(np.float32)
        data[:, holes] = np.nan
    elif kind == "uint16":
        data = data[:1].astype(np.uint16) * 200
    info = raster_info(write_raster(folder / f"{kind}.tif", data, **extra))
    grid = tile_grid(info, size, max(1, int(size * stride_share)))
    output = OutputGrid(grid, grid.stride)
    order = rng.permutation(len(grid))
    dataset = TileDataset(
        grid, resolve_bands(info, BandSettings()), None, order, lambda v, i: summarise_tile(output, v, i)
    )
    with dataset:
        for start in range(0, len(order), 7):
            items = list(range(start, min(start + 7, len(order))))
            batched = dataset.__getitems__(items)
            for item, got in zip(items, batched, strict=True):
                want = dataset[item]
                assert got.keys() == want.keys() and got["index"] == want["index"]
                for key in ("image", "cell_valid", "cell_span"):
                    assert torch.equal(got[key], want[key]), (kind, key, got["index"])
                assert got["valid_fraction"] == want["valid_fraction"]
            # read straight into a batch (TileBatches): what collating those items gives
            collated, direct = default_collate(batched), dataset.read_batch(items)
            assert collated.keys() == direct.keys()
            for key, value in collated.items():
                assert value.dtype == direct[key].dtype and torch.equal(value, direct[key]), (kind, key)
        batches = TileBatches(dataset, 7)
        assert len(batches) == -(-len(order) // 7) and torch.equal(
            batches[0]["index"], torch.as_tensor(order[:7])
        )


def test_tile_normalisation_matches_the_evaluation_transform():
    """predict-tiles normalises uint8 batches itself (one fused pass); the result is what the training
    run's evaluation transform (albumentations Normalize, ToTensorV2) gives, channels_last."""
    from seabed_hmc.data.transforms import build_transform
    from seabed_hmc.engine.tiles import tile_transform, to_model_input

    norm = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "image_size": 24}
    from seabed_hmc.config import RunConfig, config_to_dict
    from seabed_hmc.engine.checkpoint import ModelCheckpoint

    record = ModelCheckpoint(
        hierarchy={},
        encoder={"name": "resnet18"},
        normalisation=norm,
        config=config_to_dict(RunConfig()),
        model={},
    )
    _, fused = tile_transform(record)
    tiles = torch.randint(0, 256, (5, 24, 24, 3), dtype=torch.uint8)
    got = to_model_input(tiles, fused)
    evaluation = build_transform(None, 24, norm["mean"], norm["std"], train=False)
    want = torch.stack([evaluation(image=tile.numpy())["image"] for tile in tiles])
    assert got.is_contiguous(memory_format=torch.channels_last) and got.dtype == torch.float32
    assert torch.allclose(got, want, atol=1e-5)


def test_class_map_palette_is_matplotlibs_tab10():
    import matplotlib

    from seabed_hmc.engine.tiles import TAB10

    palette = matplotlib.colormaps["tab10"]
    assert [tuple(int(c[i : i + 2], 16) / 255 for i in (0, 2, 4)) for c in TAB10] == [
        palette(k)[:3] for k in range(10)
    ]


def test_every_node_of_the_class_map_has_a_colour_of_its_own(tmp_path):
    from seabed_hmc.engine.tile_maps import _colours
    from seabed_hmc.hierarchy import from_paths, load_hierarchy

    make_synthetic_seafloor(tmp_path, images=4, size=16, seed=1)
    wide = from_paths(
        [f"Biota > Group {g} > Taxon {t}" for g in range(6) for t in range(9)] + ["Substrate > Sand"]
    )
    for hierarchy in (load_hierarchy(tmp_path / "hierarchy.csv"), wide):
        colours = _colours(hierarchy)
        assert len(set(colours.values())) == len(hierarchy) + 2  # nodes, nodata and abstention apart
        roots = {colours[r + 1] for r in hierarchy.roots}
        assert len(roots) == len(hierarchy.roots)


def test_block_friendly_order_walks_bands_that_fit_the_cache(tmp_path):
    from seabed_hmc.data.geo import block_friendly_order

    data = textured(256, 256)
    tiled = write_raster(tmp_path / "tiled.tif", data, tiled=True, blockxsize=32, blockysize=32)
    striped = write_raster(tmp_path / "striped.tif", data)
    grid = tile_grid(raster_info(tiled), 32, 16)
    everything = np.arange(len(grid))
    block_bytes = 32 * 32 * 3
    order = block_friendly_order(grid, everything, cache_bytes=3 * block_bytes * 2)  # bands of 2 blocks
    assert sorted(order.tolist()) == everything.tolist()
    rows, cols = grid.windows[order, 0], grid.windows[order, 1]
    bands = cols // 64
    assert np.all(np.diff(bands) >= 0) and len(set(bands.tolist())) == 4
    for band in range(4):  # row by row inside a band
        inside = np.flatnonzero(bands == band)
        assert np.all(np.diff(rows[inside] * 1000 + cols[inside]) > 0)
    # every tile of a subset still comes once; a cache wider than the raster, or a raster of
    # full-width strips, keeps the row order
    subset = everything[::3]
    assert sorted(block_friendly_order(grid, subset, 3 * block_bytes * 2).tolist()) == subset.tolist()
    assert np.array_equal(block_friendly_order(grid, everything, 3 * block_bytes * 8), everything)
    striped_grid = tile_grid(raster_info(striped), 32, 16)
    assert raster_info(striped).block[1] == 256
    assert np.array_equal(block_friendly_order(striped_grid, everything, 3 * block_bytes * 2), everything)


def test_the_order_of_tiles_does_not_change_the_outputs(checkpoint, tmp_path, monkeypatch):
    import seabed_hmc.engine.tiles as tiles

    raster = collar_raster(tmp_path)
    options = {"workers": 0, "progress": False, "cell": 8, "stride": 12, "tile_size": 16, "batch_size": 5}
    predict_tiles(checkpoint, raster, tmp_path / "default", **options)
    monkeypatch.setattr(tiles, "block_friendly_order", lambda grid, indices: np.asarray(indices)[::-1])
    predict_tiles(checkpoint, raster, tmp_path / "reversed", **options)
    # other batches, and overlaps summed in another order: the same up to float rounding
    for name in ("classes", "probabilities", "uncertainty"):
        with (
            rasterio.open(tmp_path / "default" / f"{name}.tif") as a,
            rasterio.open(tmp_path / "reversed" / f"{name}.tif") as b,
        ):
            np.testing.assert_allclose(a.read(), b.read(), atol=1e-5, err_msg=name)
    table = [pd.read_csv(tmp_path / f / "tiles.csv", keep_default_na=False) for f in ("default", "reversed")]
    pd.testing.assert_frame_equal(
        table[0].drop(columns="probabilities"), table[1].drop(columns="probabilities")
    )
    for a, b in zip(table[0]["probabilities"], table[1]["probabilities"], strict=True):
        assert (a == "") == (b == "")
        if a:
            np.testing.assert_allclose(
                np.array(a.split("|"), float), np.array(b.split("|"), float), atol=2e-4
            )


def test_large_blocks_are_reused_from_the_heap():
    """predict-tiles turns glibc's mmap off for large blocks (engine/allocator.py): a 64 MB block freed
    and allocated again is then reused from the heap, not mapped afresh and page-faulted in."""
    import ctypes
    import resource

    from seabed_hmc.engine.allocator import _libc, serve_large_blocks_from_heap

    if not serve_large_blocks_from_heap():
        pytest.skip("not glibc")
    libc, size = _libc(), 64 << 20
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    block = libc.malloc(size)
    ctypes.memset(block, 1, size)  # touch every page once
    libc.free(block)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = libc.malloc(size)
    ctypes.memset(block, 1, size)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    libc.free(block)
    assert faults < 8  # a fresh mapping faults every page in: 16,384 (4 KB) or 32 (2 MB pages)


def test_an_output_grid_too_large_for_memory_stops_before_any_tile(checkpoint, tmp_path, monkeypatch, capsys):
    from seabed_hmc.cli import main
    from seabed_hmc.engine import tile_maps

    assert tile_maps.check_output_fits(21, 100, 200, available=10**9) == 100 * 200 * (8 * 21 + 5)
    with pytest.raises(MemoryError, match=r"10,000 x 20,000 cells for 21 nodes: its sums need 32\.2 GiB"):
        tile_maps.check_output_fits(21, 10_000, 20_000, available=16 * 2**30)
    monkeypatch.setattr(tile_maps, "available_memory", lambda: 1000)
    raster = collar_raster(tmp_path)
    code = main(["predict-tiles", "--checkpoint", str(checkpoint), "--raster", str(raster), "--out",
                 str(tmp_path / "out"), "--workers", "0", "--no-progress", "--cell", "1"])  # fmt: skip
    assert code == 2
    assert "give a larger --cell" in capsys.readouterr().err
    assert not (tmp_path / "out" / "tiles.csv").exists()


def test_gpu_defaults_and_precision_settings(monkeypatch):
    from seabed_hmc.engine import device, tiles

    cpu, gpu = torch.device("cpu"), torch.device("cuda", 0)
    assert device.default_batch(cpu) == 32 and device.default_batch(gpu) == 256
    monkeypatch.setattr(tiles.os, "cpu_count", lambda: 16)
    assert (
        tiles.default_workers(gpu) == 8 and tiles.default_workers(cpu) == 4 and tiles.default_workers() == 4
    )
    monkeypatch.setattr(tiles.os, "cpu_count", lambda: 2)
    assert tiles.default_workers(gpu) == 1 and tiles.default_workers(cpu) == 0
    assert tiles.inference_dtype("auto", cpu) is None and tiles.inference_dtype("fp32", gpu) is None
    assert tiles.inference_dtype("bf16", cpu) == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert tiles.inference_dtype("auto", gpu) == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert tiles.inference_dtype("auto", gpu) is None


def test_bf16_maps_agree_with_fp32(checkpoint, tmp_path):
    raster = collar_raster(tmp_path)
    options = {"workers": 0, "progress": False, "cell": 16, "max_invalid": 1.0}
    predict_tiles(checkpoint, raster, tmp_path / "fp32", precision="fp32", **options)
    predict_tiles(checkpoint, raster, tmp_path / "bf16", precision="bf16", **options)
    with (
        rasterio.open(tmp_path / "fp32" / "probabilities.tif") as a,
        rasterio.open(tmp_path / "bf16" / "probabilities.tif") as b,
    ):
        fp32, bf16 = a.read().astype(int), b.read().astype(int)
    valid = fp32 != 255
    assert np.array_equal(valid, bf16 != 255)
    assert np.abs(fp32 - bf16)[valid].max() <= 0.03 * 254  # bf16 keeps 8 bits of mantissa
