"""Synthetic seafloor data: procedural habitat images with a multi-label hierarchy, and a georeferenced
survey mosaic with known habitat patches.

``make_synthetic_seafloor`` draws procedural textures that look like the habitats they are named after
(rippled and flat sand, pebbles and cobbles, bedrock and boulders) and overlays biota (kelp, sugar
kelp, coralline algae, massive sponges) on some of them, so images are multi-label.  The hierarchy is
four levels deep and several deep classes are rare.  The demo, the ablation grid's ``synthetic``
option, the tests and the benchmarks all draw from here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFilter

SUBSTRATES = {  # leaf path: relative frequency
    "Substrate > Unconsolidated > Sand > Rippled sand": 1.0,
    "Substrate > Unconsolidated > Sand > Flat sand": 1.0,
    "Substrate > Unconsolidated > Gravel > Pebbles": 0.6,
    "Substrate > Unconsolidated > Gravel > Cobbles": 0.15,
    "Substrate > Consolidated > Rock > Bedrock": 0.6,
    "Substrate > Consolidated > Rock > Boulders": 0.15,
}
BIOTA = {
    "Biota > Macroalgae > Kelp > Laminaria": 0.25,
    "Biota > Macroalgae > Kelp > Sugar kelp": 0.06,
    "Biota > Macroalgae > Encrusting > Coralline algae": 0.06,
    "Biota > Sponges > Massive": 0.05,
}


def _noise(rng: np.random.Generator, size: int, scale: int) -> np.ndarray:
    """Smooth noise in [-1, 1]: random values on a coarse grid, upsampled bicubically."""
    coarse = rng.uniform(-1, 1, (max(2, size // scale), max(2, size // scale))).astype(np.float32)
    image = Image.fromarray(coarse, mode="F").resize((size, size), Image.Resampling.BICUBIC)
    return np.clip(np.asarray(image), -1, 1)


def _base(rng, size, colour, variation, grain) -> np.ndarray:
    colour = np.asarray(colour, np.float32) * rng.uniform(0.9, 1.1)
    field = variation * _noise(rng, size, 8)[..., None] + grain * rng.normal(size=(size, size, 1))
    return colour + 255 * field


def _stones(
    rng, image: np.ndarray, count: int, radius: tuple[int, int], shade: tuple[int, int]
) -> np.ndarray:
    canvas = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    size = image.shape[0]
    for _ in range(count):
        r = rng.integers(*radius)
        x, y = rng.integers(0, size, 2)
        grey = int(rng.integers(*shade))
        draw.ellipse([x - r, y - int(r * rng.uniform(0.6, 1)), x + r, y + r], fill=(grey, grey, grey - 10))
    return np.asarray(canvas.filter(ImageFilter.SMOOTH), np.float32)


def draw_substrate(rng: np.random.Generator, leaf: str, size: int) -> np.ndarray:
    name = leaf.rsplit(" > ", 1)[1]
    if name in ("Rippled sand", "Flat sand"):
        image = _base(rng, size, (194, 178, 128), 0.06, 0.03)
        if name == "Rippled sand":
            angle, period = rng.uniform(0, np.pi), rng.uniform(5, 9)
            yy, xx = np.mgrid[0:size, 0:size]
            ripples = np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period)
            image = image + 22 * ripples[..., None]
        return image
    if name in ("Pebbles", "Cobbles"):
        image = _base(rng, size, (120, 115, 105), 0.05, 0.04)
        if name == "Pebbles":
            return _stones(rng, image, 90, (2, 5), (90, 170))
        return _stones(rng, image, 14, (7, 12), (80, 160))
    image = _base(rng, size, (70, 68, 66), 0.12, 0.03)
    if name == "Bedrock":
        canvas = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(canvas)
        for _ in range(4):
            points = [tuple(rng.integers(0, size, 2)) for _ in range(3)]
            draw.line(points, fill=(30, 30, 30), width=1)
        return np.asarray(canvas, np.float32)
    return _stones(rng, image, 4, (12, 20), (60, 110))


def draw_biota(rng: np.random.Generator, image: np.ndarray, leaf: str) -> np.ndarray:
    name = leaf.rsplit(" > ", 1)[1]
    size = image.shape[0]
    canvas = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    if name in ("Laminaria", "Sugar kelp"):
        colour, width, count = ((60, 80, 30), 2, 6) if name == "Laminaria" else ((150, 120, 40), 5, 3)
        for _ in range(count):
            x, y = rng.integers(0, size, 2)
            points = [(x, y)]
            for _ in range(5):
                x, y = x + rng.integers(-6, 7), y + rng.integers(4, 12)
                points.append((x, y))
            draw.line(points, fill=colour, width=width)
    elif name == "Coralline algae":
        for _ in range(5):
            x, y, r = *rng.integers(0, size, 2), rng.integers(4, 9)
            draw.ellipse([x - r, y - r, x + r, y + r], fill=(205, 120, 150))
    else:  # massive sponge: one large orange-yellow blob
        x, y, r = *rng.integers(size // 4, 3 * size // 4, 2), rng.integers(size // 6, size // 4)
        draw.ellipse([x - r, y - r, x + r, y + r], fill=(235, 170, 40))
    return np.asarray(canvas, np.float32)


def draw_habitat(rng: np.random.Generator, size: int) -> tuple[np.ndarray, list[str]]:
    """One patch: a substrate drawn by frequency, then each biota overlaid with its chance."""
    substrates, weights = list(SUBSTRATES), np.array(list(SUBSTRATES.values()))
    leaf = substrates[rng.choice(len(substrates), p=weights / weights.sum())]
    image = draw_substrate(rng, leaf, size)
    labels = [leaf]
    for biota, chance in BIOTA.items():
        if rng.random() < chance:
            image = draw_biota(rng, image, biota)
            labels.append(biota)
    return image, labels


def make_synthetic_seafloor(folder: str | Path, images: int = 600, size: int = 64, seed: int = 0) -> Path:
    """Write PNG images, ``manifest.csv`` (60/20/20 split) and ``hierarchy.csv``; returns the manifest."""
    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for index in range(images):
        image, labels = draw_habitat(rng, size)
        name = f"images/seafloor_{index:04d}.png"
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(folder / name)
        split = "train" if index % 5 < 3 else ("val" if index % 5 == 3 else "test")
        rows.append(
            {"image": name, "labels": "|".join(labels), "split": split, "survey": f"demo-{index % 3}"}
        )
    manifest = folder / "manifest.csv"
    pd.DataFrame(rows).to_csv(manifest, index=False)
    pd.DataFrame({"path": [*SUBSTRATES, *BIOTA]}).to_csv(folder / "hierarchy.csv", index=False)
    return manifest


def make_synthetic_mosaic(folder: str | Path, patches: int = 10, size: int = 64, seed: int = 7) -> Path:
    """A georeferenced survey mosaic of ``patches`` x ``patches`` habitat patches (``size`` px each).

    Written as ``mosaic.tif`` (3-band uint8, EPSG:32630, 5 cm pixels, nodata 0) with its first column
    of patches left as a nodata collar, and ``ground_truth.csv`` (patch row, col, pixel window and
    labels).  Habitats are drawn like the training images, with the same relative frequencies."""
    import rasterio
    from rasterio.transform import from_origin

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    mosaic = np.zeros((patches * size, patches * size, 3), dtype=np.uint8)
    truth = []
    for row in range(patches):
        for col in range(1, patches):  # column 0 stays nodata: a survey edge
            image, labels = draw_habitat(rng, size)
            block = np.clip(image, 1, 255).astype(np.uint8)  # 0 is reserved for nodata
            mosaic[row * size : (row + 1) * size, col * size : (col + 1) * size] = block
            truth.append({"patch_row": row, "patch_col": col, "row": row * size, "col": col * size,
                          "labels": "|".join(labels)})  # fmt: skip
    profile = {
        "driver": "GTiff", "width": mosaic.shape[1], "height": mosaic.shape[0], "count": 3, "dtype": "uint8",
        "crs": "EPSG:32630", "transform": from_origin(430_000.0, 5_960_000.0, 0.05, 0.05), "nodata": 0,
        "tiled": True, "blockxsize": 256, "blockysize": 256, "compress": "deflate",
    }  # fmt: skip
    path = folder / "mosaic.tif"
    with rasterio.open(path, "w", **profile) as target:
        target.write(mosaic.transpose(2, 0, 1))
    pd.DataFrame(truth).to_csv(folder / "ground_truth.csv", index=False)
    return path
