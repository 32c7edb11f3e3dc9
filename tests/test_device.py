"""Device selection (CPU / CUDA) and the process-group backend; the GPU run is skipped without a GPU."""

from __future__ import annotations

import json

import pytest
import torch

from seabed_hmc.config import ConfigError
from seabed_hmc.engine import device as device_module
from seabed_hmc.engine.device import device_of, resolve_device, to_device
from seabed_hmc.engine.distributed import backend_for
from tests.test_train import seafloor, tiny_config  # noqa: F401  (the fixture)


def fake_gpus(monkeypatch, count: int) -> None:
    monkeypatch.setattr(device_module.torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(device_module.torch.cuda, "device_count", lambda: count)


def test_auto_cpu_and_cuda_resolve(monkeypatch):
    fake_gpus(monkeypatch, 0)
    assert resolve_device("auto") == torch.device("cpu") == resolve_device(None) == resolve_device(" CPU ")
    with pytest.raises(ConfigError, match="train.device 'cuda': torch sees no CUDA GPU"):
        resolve_device("cuda", "train.device")
    fake_gpus(monkeypatch, 2)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert resolve_device("auto") == torch.device("cuda", 0)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    monkeypatch.setenv("LOCAL_RANK", "1")  # under torchrun: this process's GPU
    assert resolve_device("cuda") == torch.device("cuda", 1) == resolve_device("auto")
    with pytest.raises(ConfigError, match="only 2 CUDA GPU"):
        resolve_device("cuda:2")
    # more torchrun processes on this machine than GPUs: the counts and both ways out
    monkeypatch.setenv("LOCAL_RANK", "2")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    for setting in ("auto", "cuda"):
        with pytest.raises(ConfigError) as caught:
            resolve_device(setting, "train.device")
        assert "process 2 of 4 that torchrun started" in str(caught.value)
        assert "only 2 CUDA GPU(s)" in str(caught.value) and "nproc_per_node=2" in str(caught.value)
        assert "set train.device to 'cpu'" in str(caught.value)
    assert resolve_device("cpu") == torch.device("cpu")
    for bad, message in [("gpu", "expected 'auto'"), ("cuda:x", "cuda:N"), ("cuda:-1", "negative")]:
        with pytest.raises(ConfigError, match=message):
            resolve_device(bad)


def test_backend_follows_the_device(monkeypatch):
    monkeypatch.delenv("SEABED_HMC_DIST_BACKEND", raising=False)
    assert backend_for(torch.device("cuda", 0)) == "nccl"
    assert backend_for(torch.device("cpu")) == "gloo"
    monkeypatch.setenv("SEABED_HMC_DIST_BACKEND", "gloo")
    assert backend_for(torch.device("cuda", 0)) == "gloo"


def test_device_helpers():
    layer = torch.nn.Linear(2, 3)
    assert device_of(layer) == torch.device("cpu") and device_of(torch.nn.ReLU()) == torch.device("cpu")
    tensor = torch.ones(2)
    assert to_device(tensor, torch.device("cpu")) is tensor  # no copy on the same device


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without a GPU")
def test_training_on_a_missing_gpu_stops_with_the_key(seafloor, tmp_path):  # noqa: F811
    from seabed_hmc.engine.train import train

    with pytest.raises(ConfigError, match="train.device 'cuda'"):
        train(tiny_config(seafloor, tmp_path / "run", "train.device=cuda"))


def test_explicit_cpu_device_end_to_end(seafloor, tmp_path, capsys):  # noqa: F811
    from seabed_hmc.cli import main
    from seabed_hmc.engine.train import train

    train(tiny_config(seafloor, tmp_path / "run", "train.epochs=1", "train.device=cpu"))
    checkpoint = tmp_path / "run" / "best.pt"
    code = main(["predict", "--checkpoint", str(checkpoint), "--images", str(seafloor), "--out",
                 str(tmp_path / "p.csv"), "--workers", "0", "--device", "cpu"])  # fmt: skip
    assert code == 0 and (tmp_path / "p.csv").exists()
    code = main(["evaluate", "--checkpoint", str(checkpoint), "--manifest", str(seafloor), "--workers", "0",
                 "--device", "cuda:x"])  # fmt: skip
    assert code == 2 and "device 'cuda:x': expected 'cuda:N'" in capsys.readouterr().err


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none on this machine or in CI)")
def test_gpu_training_matches_the_cpu(seafloor, tmp_path):  # noqa: F811
    """Frozen features, no dropout: the GPU run's validation AU(PRC) is the CPU run's within 1e-3."""
    from seabed_hmc.engine.train import train

    results = {}
    for name in ("cpu", "cuda"):
        config = tiny_config(seafloor, tmp_path / name, f"train.device={name}", "head.dropout=0.0")
        config.train.deterministic = True
        train(config)
        results[name] = json.loads((tmp_path / name / "metrics.json").read_text())["val"]["au_prc"]
    assert results["cuda"] == pytest.approx(results["cpu"], abs=1e-3)


def test_per_device_defaults(monkeypatch):
    from seabed_hmc.engine.evaluation import scoring_batch

    cpu, gpu = torch.device("cpu"), torch.device("cuda", 0)
    monkeypatch.setattr(device_module.os, "cpu_count", lambda: 16)
    assert device_module.loader_workers(None, cpu) == 2 == device_module.loader_workers(None)
    assert device_module.loader_workers(None, gpu) == 14 and device_module.loader_workers(3, gpu) == 3
    monkeypatch.setattr(device_module.os, "cpu_count", lambda: 64)
    assert device_module.loader_workers(None, gpu) == 16
    monkeypatch.setattr(device_module.os, "cpu_count", lambda: 2)
    assert device_module.loader_workers(None, gpu) == 1 and device_module.loader_workers(0, gpu) == 0
    on = device_module.normalises_on_device
    assert on("auto", gpu) and not on("auto", cpu) and not on("auto", None) and on(True, cpu)
    assert not on(False, gpu)
    config = tiny_config_defaults()
    assert scoring_batch(config, cpu) == 32 and scoring_batch(config, gpu) == 256
    config.train.batch_size = 512  # never smaller than the training batch
    assert scoring_batch(config, gpu) == 512


def test_bf16_auto_follows_the_device_the_images_are_on(monkeypatch):
    """``train.bf16: auto`` on a machine with a bf16 GPU: the encoder autocasts on the GPU, but a run on
    that machine's CPU (``train.device=cpu``) stays fp32 unless the CPU itself has bf16."""
    from seabed_hmc.models import EnsembleHead
    from seabed_hmc.models.classifier import HierarchicalClassifier

    seen = []

    class Probe(torch.nn.Module):
        def forward(self, images):
            seen.append(torch.is_autocast_enabled("cpu"))
            return images.flatten(1)

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    images = torch.zeros(2, 3, 1, 1)
    for cpu_has_bf16 in (False, True):
        monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda v=cpu_has_bf16: v)
        for setting in ("auto", True, False):
            HierarchicalClassifier(Probe(), EnsembleHead(3, 2, heads=1), autocast_bf16=setting)(images)
    assert seen == [False, True, False, True, True, False]


def tiny_config_defaults():
    from seabed_hmc.config import load_config

    return load_config(None, [])


def test_uint8_images_normalised_by_the_model_match_the_transform(tmp_path):
    """The same image through the transform with Normalize (float) and without it (uint8, normalised
    by the model on its device): the same encoder input to float rounding, in either memory format."""
    import numpy as np
    from PIL import Image

    from seabed_hmc.data.images import ImageDataset
    from seabed_hmc.data.transforms import TransformSpecError, build_transform
    from seabed_hmc.models import EnsembleHead
    from seabed_hmc.models.classifier import HierarchicalClassifier

    paths = []
    for index in range(3):
        path = tmp_path / f"{index}.png"
        Image.fromarray(np.random.default_rng(index).integers(0, 256, (40, 52, 3), np.uint8)).save(path)
        paths.append(str(path))
    mean, std = (0.3, 0.4, 0.5), (0.2, 0.25, 0.3)
    empty = torch.zeros(3, 0)
    floats = ImageDataset(paths, empty, empty, build_transform(None, 24, mean, std, False))
    raw = ImageDataset(paths, empty, empty, build_transform(None, 24, mean, std, False, normalise=False))
    expected = torch.stack([floats[i]["image"] for i in range(3)])
    images = torch.stack([raw[i]["image"] for i in range(3)])
    assert expected.dtype == torch.float32 and images.dtype == torch.uint8 and images.shape == (3, 3, 24, 24)
    model = HierarchicalClassifier(torch.nn.Identity(), EnsembleHead(4, 2, heads=1))
    with pytest.raises(ValueError, match="set_input_normalisation"):
        model.prepare_input(images)
    model.set_input_normalisation(mean, std)
    got = model.prepare_input(images)
    assert got.dtype == torch.float32 and torch.allclose(got, expected, atol=1e-5)
    last = model.prepare_input(images.contiguous(memory_format=torch.channels_last))
    assert last.is_contiguous(memory_format=torch.channels_last) and torch.allclose(last, expected, atol=1e-5)
    assert model.prepare_input(expected) is expected  # float images pass as they are
    # an entry that turns the image to float cannot be normalised on the device: a clear stop
    to_float = build_transform([{"name": "ToFloat"}], 24, mean, std, train=True, normalise=False)
    with pytest.raises(TransformSpecError, match="data.normalise_on_device=false"):
        ImageDataset(paths, empty, empty, to_float)[0]


def test_training_with_images_normalised_on_the_device_matches(seafloor, tmp_path):  # noqa: F811
    """A trainable encoder fed uint8 images (normalised by the model) trains as with normalised
    float images from the workers: the same losses and validation AU(PRC) to float rounding."""
    import pandas as pd

    from seabed_hmc.engine.train import train

    results = {}
    for setting in ("false", "true"):
        config = tiny_config(seafloor, tmp_path / setting, "encoder.freeze=false", "train.epochs=2",
                             "head.dropout=0.0", f"data.normalise_on_device={setting}")  # fmt: skip
        config.train.deterministic = True
        train(config)
        metrics = json.loads((tmp_path / setting / "metrics.json").read_text())
        losses = pd.read_csv(tmp_path / setting / "log.csv")["train_loss"].tolist()
        results[setting] = (metrics["val"]["au_prc"], metrics["test"]["au_prc"], losses)
    assert results["true"][:2] == pytest.approx(results["false"][:2], abs=1e-4)
    assert results["true"][2] == pytest.approx(results["false"][2], rel=1e-4)
