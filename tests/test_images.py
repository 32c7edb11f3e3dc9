"""Image loading, checking, the dataset and its collate, statistics, and the augmentation pipelines.

Every kind of file ends in a converted image with known pixel values, or in a reported problem with its
reason.  (The transforms tests live here too, beside the dataset that uses them.)
"""

from __future__ import annotations

import logging
import struct
import zlib
from pathlib import Path

import albumentations as A
import numpy as np
import pytest
import torch
from PIL import Image, ImageFile
from torch.utils.data import DataLoader

from seabed_hmc.data import (
    DEFAULT_TRAIN_TRANSFORMS,
    BadImageError,
    ImageCheckError,
    ImageDataset,
    TransformSpecError,
    build_transform,
    check_images,
    collate_skip_bad,
    dataset_statistics,
    images,
    load_image,
)

RGB = (200, 100, 50)


def solid(mode: str, value, size=(6, 4)) -> Image.Image:
    return Image.new(mode, size, value)


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header declares ``width`` x ``height`` pixels, with no real pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )
    return path


# ------------------------------------------------------------------ load_image: conversions
def test_rgb_jpeg_loads_as_uint8_rgb(tmp_path) -> None:
    solid("RGB", RGB).save(tmp_path / "a.jpg", quality=95)
    array = load_image(tmp_path / "a.jpg")
    assert array.shape == (4, 6, 3) and array.dtype == np.uint8 and array.flags.c_contiguous
    assert np.abs(array.astype(int) - RGB).max() <= 3  # JPEG is lossy


@pytest.mark.parametrize(
    ("mode", "value", "extension", "expected"),
    [
        ("L", 77, "png", (77, 77, 77)),
        ("1", 1, "png", (255, 255, 255)),
        ("RGBA", (200, 100, 50, 128), "png", (100, 50, 25)),  # composited on black: round(v * 128 / 255)
        ("RGBA", (200, 100, 50, 0), "png", (0, 0, 0)),
        ("LA", (90, 255), "png", (90, 90, 90)),
    ],
)
def test_grey_and_transparent_images_convert_by_the_documented_rule(
    tmp_path, mode, value, extension, expected
) -> None:
    path = tmp_path / f"image.{extension}"
    solid(mode, value).save(path)
    array = load_image(path)
    assert array.shape == (4, 6, 3) and array.dtype == np.uint8
    assert (array == expected).all()


def test_sixteen_bit_png_is_divided_by_257(tmp_path) -> None:
    values = np.array([[0, 257 * 100, 65535, 1000]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode == "I;16"
    array = load_image(tmp_path / "g16.png")
    assert array[0, :, 0].tolist() == [0, 100, 255, 4] and (array == array[:, :, :1]).all()


def test_32_bit_integer_images_are_clipped_to_16_bits_then_scaled(tmp_path) -> None:
    Image.fromarray(np.array([[-5, 65535, 70000]], dtype=np.int32)).save(tmp_path / "i32.tif")
    assert load_image(tmp_path / "i32.tif")[0, :, 1].tolist() == [0, 255, 255]


def test_cmyk_jpeg_and_palette_png_convert_to_rgb(tmp_path) -> None:
    solid("RGB", RGB).convert("CMYK").save(tmp_path / "c.jpg", quality=95)
    assert Image.open(tmp_path / "c.jpg").mode == "CMYK"
    assert np.abs(load_image(tmp_path / "c.jpg").astype(int) - RGB).max() <= 4
    two = Image.new("RGB", (4, 2), (10, 20, 30))
    two.paste((250, 0, 0), (0, 0, 2, 2))
    two.convert("P", palette=Image.Palette.ADAPTIVE, colors=2).save(tmp_path / "p.png")
    array = load_image(tmp_path / "p.png")
    assert array[0, 0].tolist() == [250, 0, 0] and array[1, 3].tolist() == [10, 20, 30]
    transparent = two.convert("P", palette=Image.Palette.ADAPTIVE, colors=2)
    transparent.info["transparency"] = transparent.getpixel((0, 0))
    transparent.save(tmp_path / "pt.png", transparency=transparent.getpixel((0, 0)))
    array = load_image(tmp_path / "pt.png")
    assert array[0, 0].tolist() == [0, 0, 0] and array[1, 3].tolist() == [10, 20, 30]


def test_exif_orientation_is_applied(tmp_path) -> None:
    image = solid("RGB", RGB, size=(6, 2))
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    image.save(tmp_path / "turned.jpg", exif=exif)
    assert load_image(tmp_path / "turned.jpg").shape == (6, 2, 3)


# ------------------------------------------------------------------ load_image: bad files
def bad_files(folder: Path) -> dict[str, tuple[Path, str]]:
    """{case: (path, expected words in the reason)} for every kind of bad file."""
    solid("RGB", RGB, size=(64, 64)).save(folder / "whole.jpg", quality=95)
    whole = (folder / "whole.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "text.jpg").write_text("not an image at all\n")
    Image.fromarray(np.zeros((2, 2), dtype=np.float32)).save(folder / "float.tif")
    (folder / "a_folder.png").mkdir()
    return {
        "truncated": (folder / "truncated.jpg", "truncated"),
        "zero bytes": (folder / "empty.jpg", "empty file (0 bytes)"),
        "text": (folder / "text.jpg", "not an image PIL can read"),
        "missing": (folder / "missing.png", "file not found"),
        "bomb": (png_header_only(folder / "bomb.png", 100_000, 100_000), "decompression bomb"),
        "float": (folder / "float.tif", "mode F"),
        "folder": (folder / "a_folder.png", "is a folder"),
    }


def test_every_bad_file_raises_bad_image_error_with_its_reason(tmp_path) -> None:
    for case, (path, words) in bad_files(tmp_path).items():
        with pytest.raises(BadImageError) as caught:
            load_image(path)
        assert words in caught.value.reason, case
        assert caught.value.path == str(path) and str(path) in str(caught.value)


def test_pils_own_bomb_error_is_reported_and_the_pixel_limit_is_ours(tmp_path, monkeypatch) -> None:
    bomb = png_header_only(tmp_path / "bomb.png", 100_000, 100_000)
    with pytest.raises(BadImageError, match="decompression bomb: Image size"):
        load_image(bomb, max_pixels=0)  # 0 = no limit of ours: PIL's own check fires
    solid("RGB", RGB, size=(10, 10)).save(tmp_path / "ok.png")
    monkeypatch.setattr(images, "MAX_IMAGE_PIXELS", 99)
    with pytest.raises(BadImageError, match="10x10 = 100 pixels, above the limit of 99"):
        load_image(tmp_path / "ok.png")
    assert load_image(tmp_path / "ok.png", max_pixels=100).shape == (10, 10, 3)


# ------------------------------------------------------------------ check_images
def test_check_images_reports_good_indices_and_problems(tmp_path, caplog) -> None:
    bad = bad_files(tmp_path)
    solid("L", 3).save(tmp_path / "g.png")
    paths = [
        tmp_path / "whole.jpg",
        bad["truncated"][0],
        tmp_path / "g.png",
        bad["missing"][0],
        bad["bomb"][0],
    ]
    check = check_images(paths, workers=2)
    assert check.total == 5 and check.good.tolist() == [0, 2] and check.bad.tolist() == [1, 3, 4]
    assert [path for path, _ in check.problems] == [str(paths[i]) for i in (1, 3, 4)]
    assert "truncated" in check.problems[0][1] and check.problems[1][1] == "file not found"
    assert check.bad_fraction == pytest.approx(0.6)
    with pytest.raises(
        ImageCheckError, match=r"3 of 5 images \(60.00%\) cannot be used.*allowed 50.00%"
    ) as caught:
        check.raise_if_too_many(0.5, shown=2)
    assert str(paths[1]) in str(caught.value) and "... and 1 more" in str(caught.value)
    with caplog.at_level(logging.WARNING, logger="seabed_hmc.data.images"):
        assert check.raise_if_too_many(0.6) is check
    assert "3 of 5 images (60.00%) cannot be used" in caplog.text
    assert check_images(paths[:1], workers=1).raise_if_too_many(0.0).good.tolist() == [0]


def test_check_images_warns_when_truncated_images_are_let_through(tmp_path, monkeypatch) -> None:
    solid("L", 3).save(tmp_path / "g.png")
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.warns(UserWarning, match="LOAD_TRUNCATED_IMAGES is on"):
        check_images([tmp_path / "g.png"])


# ------------------------------------------------------------------ transforms
@pytest.mark.parametrize(("train", "fit"), [(True, "resize"), (False, "resize"), (False, "center_crop")])
def test_build_transform_outputs_normalised_float_tensors_of_the_image_size(train, fit) -> None:
    transform = build_transform(
        None, (24, 40), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), train=train, fit=fit
    )
    assert isinstance(transform, A.Compose)
    assert type(transform.transforms[-1]).__name__ == "ToTensorV2"
    assert type(transform.transforms[-2]).__name__ == "Normalize"
    image = np.full((50, 70, 3), 128, dtype=np.uint8)
    out = transform(image=image)["image"]
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32 and out.shape == (3, 24, 40)
    if not train:
        assert torch.allclose(out, torch.full_like(out, (128 / 255 - 0.5) / 0.25), atol=1e-6)


def test_default_train_transforms_crop_flip_and_turn() -> None:
    names = [entry["name"] for entry in DEFAULT_TRAIN_TRANSFORMS]
    assert names == ["RandomResizedCrop", "HorizontalFlip", "VerticalFlip", "RandomRotate90", "ColorJitter"]
    steps = build_transform(None, 16, (0.4, 0.4, 0.4), (0.2, 0.2, 0.2), train=True).transforms
    assert steps[0].size == (16, 16) and steps[0].scale == (0.6, 1.0)  # size filled from image_size
    assert [type(step).__name__ for step in build_transform(None, 16, (0, 0, 0), (1, 1, 1), train=False)] == [
        "Resize",
        "Normalize",
        "ToTensorV2",
    ]


def test_a_spec_from_yaml_with_lists_and_a_nested_composition_builds() -> None:
    spec = [
        {"name": "RandomResizedCrop", "scale": [0.5, 1.0], "ratio": [0.9, 1.1]},
        {
            "name": "OneOf",
            "p": 1.0,
            "transforms": [{"name": "Blur", "blur_limit": [3, 5]}, {"name": "Transpose"}],
        },
    ]
    transform = build_transform(spec, 12, (0.5,) * 3, (0.5,) * 3, train=True)
    assert transform.transforms[0].ratio == (0.9, 1.1)
    assert [type(t).__name__ for t in transform.transforms[1].transforms] == ["Blur", "Transpose"]
    out = transform(image=np.zeros((20, 30, 3), dtype=np.uint8))["image"]
    assert out.shape == (3, 12, 12)


@pytest.mark.parametrize(
    ("spec", "pattern"),
    [
        (
            [{"name": "HorizontalFlipp"}],
            r"transforms\[0\]: unknown transform 'HorizontalFlipp'; did you mean \['HorizontalFlip'",
        ),
        (
            [{"name": "HorizontalFlip"}, {"name": "verticalflip"}],
            r"transforms\[1\]: .*did you mean \['VerticalFlip'\]",
        ),
        (
            [{"name": "HorizontalFlip", "prob": 0.5}],
            r"transforms\[0\] \(HorizontalFlip\): unknown argument\(s\) \['prob'\]; "
            r"HorizontalFlip accepts \['p'\]",
        ),
        (
            [{"name": "RandomResizedCrop", "scales": [0.5, 1]}],
            r"\['scales'\] \('scales': did you mean 'scale'\?\)",
        ),
        (
            [{"name": "HorizontalFlip", "p": 2}],
            r"transforms\[0\] \(HorizontalFlip\): invalid arguments \{'p': 2\}: "
            r"p: Input should be less than or equal to 1 \[",
        ),
        ([{"name": "Normalize"}], r"transforms\[0\]: Normalize is appended by build_transform"),
        (["HorizontalFlip"], r"transforms\[0\] is 'HorizontalFlip', not a mapping"),
        ([{"p": 0.5}], r"transforms\[0\] has no 'name'"),
        ({"name": "HorizontalFlip"}, r"transforms must be a list of entries"),
        (
            [{"name": "OneOf", "transforms": [{"name": "Blurr"}]}],
            r"transforms\[0\]\.transforms\[0\]: unknown transform 'Blurr'",
        ),
        ([{"name": "OneOf"}], r"transforms\[0\] \(OneOf\) needs 'transforms'"),
    ],
)
def test_bad_transform_entries_are_named_by_index(spec, pattern) -> None:
    with pytest.raises(TransformSpecError, match=pattern):
        build_transform(spec, 8, (0.5,) * 3, (0.5,) * 3, train=True)


# ------------------------------------------------------------------ dataset and collate
def make_images(folder: Path, count: int, size=(5, 4)) -> list[Path]:
    paths = []
    for i in range(count):
        path = folder / f"img{i}.png"
        solid("RGB", (10 * i, 20, 30), size=size).save(path)
        paths.append(path)
    return paths


def test_dataset_items_and_collate_skip_bad(tmp_path) -> None:
    paths = make_images(tmp_path, 3)
    paths.insert(1, tmp_path / "gone.png")
    targets = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [1.0, 1.0]])
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    dataset = ImageDataset(paths, targets, mask)
    item = dataset[2]
    assert item["ok"] and item["index"] == 2 and item["image"].shape == (3, 4, 5)
    assert item["image"].dtype == torch.float32 and torch.allclose(
        item["image"][:, 0, 0], torch.tensor([10, 20, 30]) / 255
    )
    assert torch.equal(item["targets"], targets[2]) and torch.equal(item["mask"], mask[2])
    bad = dataset[1]
    assert not bad["ok"] and bad["image"] is None and bad["reason"] == "file not found" and bad["index"] == 1
    batch = next(iter(DataLoader(dataset, batch_size=4, collate_fn=collate_skip_bad)))
    assert batch["image"].shape == (3, 3, 4, 5) and batch["index"].tolist() == [0, 2, 3]
    assert torch.equal(batch["targets"], targets[[0, 2, 3]]) and torch.equal(batch["mask"], mask[[0, 2, 3]])
    assert batch["bad"] == [1] and batch["bad_reasons"] == ["file not found"] and "ok" not in batch
    only_bad = collate_skip_bad([dataset[1]])
    assert only_bad["index"].numel() == 0 and only_bad["bad"] == [1] and "image" not in only_bad


def test_an_image_that_breaks_after_the_check_is_reported_not_raised(tmp_path) -> None:
    paths = make_images(tmp_path, 2, size=(30, 20))
    assert check_images(paths).good.tolist() == [0, 1]
    transform = build_transform(None, 8, (0.5,) * 3, (0.25,) * 3, train=False)
    dataset = ImageDataset(paths, torch.zeros(2, 3), None, transform)
    paths[1].write_bytes(paths[1].read_bytes()[:40])
    first, second = dataset[0], dataset[1]
    assert first["ok"] and first["image"].shape == (3, 8, 8) and first["mask"].tolist() == [1.0, 1.0, 1.0]
    assert not second["ok"] and second["image"] is None and second["reason"]
    with pytest.raises(ValueError, match="one row per path"):
        ImageDataset(paths, torch.zeros(3, 2))


# ------------------------------------------------------------------ dataset_statistics
def test_dataset_statistics_match_numpy_over_all_pixels(tmp_path, caplog) -> None:
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, size=shape, dtype=np.uint8) for shape in [(5, 7, 3), (9, 4, 3), (3, 3, 3)]]
    paths = []
    for i, array in enumerate(arrays):
        paths.append(tmp_path / f"r{i}.png")
        Image.fromarray(array).save(paths[-1])
    pixels = np.concatenate([a.reshape(-1, 3) for a in arrays]).astype(np.float64) / 255
    mean, std = dataset_statistics([*paths, tmp_path / "missing.png"], size=None)
    assert np.allclose(mean, pixels.mean(axis=0), atol=1e-12) and np.allclose(
        std, pixels.std(axis=0), atol=1e-12
    )
    assert "1 of 4 images could not be decoded" in caplog.text
    assert isinstance(mean, tuple) and len(std) == 3 and all(isinstance(v, float) for v in mean)
    # with a size, every image weighs the same: same-size images are unchanged by the resize
    same = [a[:3, :3] for a in arrays]
    for path, array in zip(paths, same, strict=True):
        Image.fromarray(np.ascontiguousarray(array)).save(path)
    equal = np.concatenate([a.reshape(-1, 3) for a in same]).astype(np.float64) / 255
    mean, std = dataset_statistics(paths, size=3)
    assert np.allclose(mean, equal.mean(axis=0)) and np.allclose(std, equal.std(axis=0))
    one_mean, _ = dataset_statistics(paths, size=3, max_images=1, workers=1)
    assert any(np.allclose(one_mean, a.reshape(-1, 3).mean(axis=0) / 255) for a in same)
    with pytest.raises(ValueError, match="none of the 1 images"):
        dataset_statistics([tmp_path / "missing.png"])
