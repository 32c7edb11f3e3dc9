"""How much do a (weakened) encoder's pooled features vary across images?

For each noise-mixing alpha, the mean absolute feature and the mean (over feature dimensions) standard
deviation across images of the CCR benthic patches (or the demo's synthetic images without the data).
A spread of zero means every image gets the same features: nothing for the heads to learn from.

    python scripts/encoder_feature_spread.py [--alphas 0 0.1 0.25 0.5 1] [--images 64]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from seabed_hmc.data.images import load_image
from seabed_hmc.data.manifest import read_manifest
from seabed_hmc.data.synthetic import make_synthetic_seafloor
from seabed_hmc.data.transforms import build_transform
from seabed_hmc.models.encoders import build_encoder
from seabed_hmc_studies import SHARED_DATA

CCR = SHARED_DATA / "ccr_benthic" / "manifest.csv"


def stage_spread(encoder, batch: torch.Tensor) -> str:
    """The standard deviation of the activations after the stem, each stage and the head (MobileNetV2)."""
    model = encoder.model
    with torch.no_grad():
        hidden = model.bn1(model.conv_stem(batch))
        values = [hidden.std().item()]
        for stage in model.blocks:
            hidden = stage(hidden)
            values.append(hidden.std().item())
        values.append(model.bn2(model.conv_head(hidden)).std().item())
    return " ".join(f"{v:.3g}" for v in values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--alphas", type=float, nargs="+", default=[0.0, 0.1, 0.25, 0.5, 1.0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument(
        "--refit", type=int, default=0, help="also with BatchNorm re-estimated on this many other images"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        if CCR.exists():
            table = read_manifest(CCR, columns={"image": "path", "labels": "hierarchy_path"})
            source = "CCR benthic patches"
        else:
            table = read_manifest(make_synthetic_seafloor(Path(scratch), images=args.images))
            source = "synthetic demo images"
        paths = table.frame["image"].tolist()[: args.images]
        print(f"# {len(paths)} {source}; MobileNetV2, ImageNet weights mixed with a random initialisation")
        others = table.frame["image"].tolist()[args.images : args.images + args.refit]
        for alpha, refit in [(a, r) for a in args.alphas for r in ([0, len(others)] if others else [0])]:
            encoder = build_encoder(
                None, weights="mobilenetv2_imagenet", freeze=True, noise_alpha=alpha, seed=0
            )
            transform = build_transform(None, 224, encoder.mean, encoder.std, train=False)
            batch = torch.stack([transform(image=load_image(p))["image"] for p in paths])
            if refit:
                fit = torch.stack([transform(image=load_image(p))["image"] for p in others])
                encoder.refit_batchnorm(iter(fit.split(32)), f"{refit} other images")
                print(f"  (BatchNorm re-estimated on {refit} other images)")
            with torch.no_grad():
                features = encoder(batch)
            scale, spread = features.abs().mean().item(), features.std(0).mean().item()
            print(f"alpha {alpha:4.2f}: mean |feature| {scale:.4f}, std across images {spread:.4f}")
            print(f"            activation std by stage: {stage_spread(encoder, batch)}")
            variances = torch.cat(
                [v.flatten() for k, v in encoder.state_dict().items() if k.endswith("running_var")]
            )
            quantiles = torch.quantile(variances, torch.tensor([0.01, 0.1, 0.5]))
            print(f"            BatchNorm running_var quantiles 1/10/50%: {quantiles.numpy().round(5)}")


if __name__ == "__main__":
    main()
