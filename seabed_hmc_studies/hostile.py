"""The hostile-input corpus: every kind of bad input the tool must survive, written by ``make_corpus``.

``python scripts/make_hostile_corpus.py [FOLDER]`` writes it (default ``tests/hostile_corpus``);
``tests/test_hostile.py`` regenerates it in a temporary folder and runs every case through the entry
point a user would hit.  Each case is a file or a small folder; ``CASES`` says what each one is.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from seabed_hmc_studies import ROOT

CASES = {
    # images: reported and skipped, or converted
    "images/truncated.jpg": "a JPEG cut in half",
    "images/empty.jpg": "zero bytes",
    "images/bomb.png": "a PNG header declaring 100,000 x 100,000 pixels (decompression bomb)",
    "images/not_an_image.jpg": "text with a .jpg name",
    "images/grey16.png": "16-bit greyscale (converted)",
    "images/cmyk.jpg": "CMYK JPEG (converted)",
    "images/palette.png": "palette PNG (converted)",
    "images/grey.png": "8-bit greyscale (converted)",
    "images/rgba.png": "RGBA PNG (converted)",
    "images/good.png": "an ordinary RGB image",
    # manifests
    "manifest_unknown_label.csv": "a row whose label is not in the hierarchy",
    "manifest_duplicates.csv": "the same image listed twice",
    "manifest_latin1.csv": "Windows-1252 text (not UTF-8)",
    "manifest_empty.csv": "zero bytes",
    "manifest_header_only.csv": "a header and no rows",
    "manifest_missing_file.csv": "a row naming an image that does not exist",
    "manifest_escape.csv": "a row whose path escapes the data root (../)",
    "manifest_bad_images.csv": "every image of images/ (half of them bad)",
    # hierarchies
    "hierarchy_cycle.csv": "a parent table with a cycle",
    "hierarchy_duplicates.csv": "a path list with a path twice",
    "hierarchy_orphan.csv": "a parent table naming a parent that is not a node",
    # configs
    "config_unknown_key.yaml": "a misspelled key",
    "config_wrong_type.yaml": "a string where a number belongs",
    "config_not_yaml.yaml": "broken YAML",
    # rasters and points
    "raster_no_crs.tif": "a GeoTIFF without a CRS",
    "raster_all_nodata.tif": "every pixel nodata",
    "raster_nan_no_tag.tif": "float32 with NaN holes and no nodata tag",
    "points_outside.csv": "points beside and outside the raster",
}

HIERARCHY = "path\nSubstrate > Sand\nSubstrate > Rock\nBiota > Kelp\n"


def _png_bomb() -> bytes:
    """A valid PNG signature and IHDR declaring 100,000 x 100,000 RGB pixels, with a tiny IDAT."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def _image(mode: str, size=(24, 24)) -> Image.Image:
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8))
    return rgb.convert(mode) if mode != "RGB" else rgb


def make_corpus(folder: str | Path) -> Path:
    import rasterio
    from rasterio.transform import from_origin

    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    images = folder / "images"
    buffer = io.BytesIO()
    _image("RGB", (64, 64)).save(buffer, "JPEG")
    (images / "truncated.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    (images / "empty.jpg").write_bytes(b"")
    (images / "bomb.png").write_bytes(_png_bomb())
    (images / "not_an_image.jpg").write_text("this is not a picture\n")
    Image.fromarray(np.arange(24 * 24, dtype=np.uint16).reshape(24, 24) * 100).save(images / "grey16.png")
    _image("CMYK").save(images / "cmyk.jpg", "JPEG")
    _image("P").save(images / "palette.png")
    _image("L").save(images / "grey.png")
    _image("RGBA").save(images / "rgba.png")
    _image("RGB").save(images / "good.png")

    (folder / "hierarchy.csv").write_text(HIERARCHY)
    header = "image,labels,split\n"
    (folder / "manifest_unknown_label.csv").write_text(
        header + "images/good.png,Substrate > Sand,train\nimages/grey.png,Substrate > Mud,train\n"
    )
    (folder / "manifest_duplicates.csv").write_text(
        header + "images/good.png,Substrate > Sand,train\nimages/good.png,Biota > Kelp,train\n"
    )
    (folder / "manifest_latin1.csv").write_bytes(
        (header + "images/good.png,Substrate > Sand,train\n").encode()
        + "images/caf\u00e9.png,Biota > Kelp,train\n".encode("cp1252")
    )
    (folder / "manifest_empty.csv").write_bytes(b"")
    (folder / "manifest_header_only.csv").write_text(header)
    (folder / "manifest_missing_file.csv").write_text(
        header + "images/good.png,Substrate > Sand,train\nimages/nowhere.png,Biota > Kelp,train\n"
    )
    (folder / "manifest_escape.csv").write_text(header + "../../etc/passwd,Substrate > Sand,train\n")
    rows = [f"images/{name},Substrate > Sand,train" for name in sorted(p.name for p in images.iterdir())]
    (folder / "manifest_bad_images.csv").write_text(header + "\n".join(rows) + "\n")

    (folder / "hierarchy_cycle.csv").write_text("node,parent\nA,\nB,A\nC,B\nB,C\n")
    (folder / "hierarchy_duplicates.csv").write_text("path\nA > B\nA > C\nA > B\n")
    (folder / "hierarchy_orphan.csv").write_text("node,parent\nA,\nB,A\nC,Z\n")

    (folder / "config_unknown_key.yaml").write_text("train:\n  epochz: 3\n")
    (folder / "config_wrong_type.yaml").write_text("train:\n  epochs: three\n")
    (folder / "config_not_yaml.yaml").write_text("train: [epochs: 3\n")

    profile = {"driver": "GTiff", "width": 16, "height": 16, "count": 1, "dtype": "uint8"}
    with rasterio.open(
        folder / "raster_no_crs.tif", "w", **profile, transform=from_origin(0, 16, 1, 1)
    ) as target:
        target.write(np.ones((1, 16, 16), np.uint8))
    georef = {"crs": "EPSG:32630", "transform": from_origin(500_000, 6_000_016, 1, 1)}
    with rasterio.open(
        folder / "raster_all_nodata.tif", "w", **{**profile, "count": 3}, **georef, nodata=0
    ) as target:
        target.write(np.zeros((3, 16, 16), np.uint8))
    floats = np.random.default_rng(1).normal(size=(1, 16, 16)).astype(np.float32)
    floats[:, 4:8, 4:8] = np.nan
    with rasterio.open(
        folder / "raster_nan_no_tag.tif", "w", **{**profile, "dtype": "float32"}, **georef
    ) as target:
        target.write(floats)
    (folder / "points_outside.csv").write_text(
        "x,y,labels\n500008,6000008,Substrate > Sand\n"
        "400000,6000008,Biota > Kelp\n500030,6000008,Biota > Kelp\n"
    )
    return folder


def main() -> None:
    """``python scripts/make_hostile_corpus.py [FOLDER]``: write the corpus and list its cases."""
    import sys

    folder = make_corpus(sys.argv[1] if len(sys.argv) > 1 else ROOT / "tests" / "hostile_corpus")
    for name, what in CASES.items():
        print(f"{folder / name}: {what}")
