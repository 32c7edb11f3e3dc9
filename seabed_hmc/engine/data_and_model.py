"""From a :class:`RunConfig` to the pieces a run needs: data table and splits, model, transforms.

Also rebuilds a model from a checkpoint alone (for ``evaluate``, ``predict`` and ``predict-tiles``):
the architecture comes from the recorded encoder settings and every weight from the checkpoint, so
the original weight files need not exist on the machine that predicts.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from seabed_hmc.config import ConfigError, DataConfig, RunConfig
from seabed_hmc.data.image_folders import scan_image_folder
from seabed_hmc.data.images import check_images, dataset_statistics
from seabed_hmc.data.manifest import ImageTable, read_manifest
from seabed_hmc.data.transforms import build_transform
from seabed_hmc.engine.checkpoint import ModelCheckpoint, read_model
from seabed_hmc.engine.device import loader_workers, normalises_on_device
from seabed_hmc.hierarchy import Hierarchy, load_hierarchy
from seabed_hmc.losses import PRESETS
from seabed_hmc.models.batchnorm_fold import fold_batchnorm
from seabed_hmc.models.classifier import HierarchicalClassifier
from seabed_hmc.models.encoders import build_encoder
from seabed_hmc.models.heads import EnsembleHead

log = logging.getLogger("seabed_hmc")
SPLITS = ("train", "val", "test")


@dataclass
class PreparedData:
    """The usable images (bad ones removed and reported) and the row indices of each split."""

    table: ImageTable
    splits: dict[str, np.ndarray]
    problems: list[tuple[str, str]] = field(default_factory=list)

    @property
    def hierarchy(self) -> Hierarchy:
        return self.table.hierarchy


def read_table(data: DataConfig) -> ImageTable:
    """The image table from a manifest or a nested folder, with the configured hierarchy."""
    hierarchy = load_hierarchy(data.hierarchy) if data.hierarchy else None
    if data.manifest:
        return read_manifest(
            data.manifest,
            hierarchy=hierarchy,
            root=data.image_root,
            columns=data.columns or None,
            allow_outside_root=data.allow_outside_root,
            on_duplicate=data.on_duplicate,
        )
    if data.image_folder:
        return scan_image_folder(data.image_folder, hierarchy=hierarchy)
    raise ConfigError("set data.manifest (a CSV) or data.image_folder (a nested folder of images)")


def prepare_data(data: DataConfig, seed: int) -> PreparedData:
    """Read the table, decode every image once (bad ones reported and skipped), and split it."""
    table = read_table(data)
    problems = list(getattr(table, "problems", []))
    check = check_images(table.frame["image"].tolist(), workers=max(1, loader_workers(data.workers)))
    problems += list(check.problems)
    check.raise_if_too_many(data.max_bad_fraction)
    if check.problems:
        log.warning("%d of %d images are unreadable and skipped", len(check.problems), len(table))
    table = table.select(np.asarray(check.good))
    splits = manifest_splits(table)
    if splits is not None:
        unassigned = len(table) - sum(len(rows) for rows in splits.values())
        if unassigned:
            log.warning("%d rows have no split and are not used", unassigned)
    else:
        order = np.random.default_rng(seed).permutation(len(table))
        validation = max(1, round(data.validation_fraction * len(table)))
        splits = {
            "train": np.sort(order[validation:]),
            "val": np.sort(order[:validation]),
            "test": np.array([], int),
        }
    if len(splits["train"]) == 0:
        raise ConfigError(f"no training images in {table.source}: give rows split=train, or no split column")
    if len(splits["val"]) == 0:
        raise ConfigError(f"no validation images in {table.source}: give some rows split=val")
    table.hierarchy = exclude_always_on_roots(table.hierarchy, table.targets[splits["train"]])
    return PreparedData(table=table, splits=splits, problems=problems)


def manifest_splits(table: ImageTable) -> dict[str, np.ndarray] | None:
    """Row indices of each split named in the table's ``split`` column (None when it has none)."""
    if "split" not in table.frame:
        return None
    split = table.frame["split"].fillna("").astype(str).str.lower()
    if not (split != "").any():
        return None
    return {name: np.flatnonzero((split == name).to_numpy()) for name in SPLITS}


def exclude_always_on_roots(hierarchy: Hierarchy, train_targets) -> Hierarchy:
    """Keep roots that every training sample has out of the loss and metrics (METHOD.md section 1)."""
    on = np.asarray(train_targets).min(axis=0) > 0.5
    always = [hierarchy.nodes[r] for r in hierarchy.roots if on[r] and hierarchy.evaluated[r]]
    if not always:
        return hierarchy
    log.info("roots on in every training sample, not evaluated: %s", always)
    return hierarchy.with_excluded([*hierarchy.excluded, *always])


def resolve_heads(config: RunConfig) -> int:
    if config.loss.name not in PRESETS:
        raise ConfigError(f"loss.name {config.loss.name!r} is not one of {sorted(PRESETS)}")
    return config.head.heads or PRESETS[config.loss.name].heads


def build_model(
    config: RunConfig, hierarchy: Hierarchy, weights: str | None = "config"
) -> HierarchicalClassifier:
    """Encoder (built as configured; ``weights=None`` skips loading them) and the ensemble head."""
    encoder_config = config.encoder
    encoder = build_encoder(
        encoder_config.name,
        weights=encoder_config.weights if weights == "config" else weights,
        freeze=encoder_config.freeze,
        noise_alpha=encoder_config.noise_alpha if weights == "config" else 0.0,
        truncate=encoder_config.truncate,
        input_size=encoder_config.input_size,
        seed=config.train.seed,
    )
    head = EnsembleHead(
        encoder.num_features,
        len(hierarchy),
        heads=resolve_heads(config),
        hidden=config.head.hidden,
        layers=config.head.layers,
        dropout=config.head.dropout,
    )
    # train.bf16 (checked by the config loader): "auto" is decided per device by the model
    return HierarchicalClassifier(encoder, head, autocast_bf16=config.train.bf16)


def normalisation(config: RunConfig, model: HierarchicalClassifier, train_paths: list[str]) -> dict:
    """Input mean, std and size: explicit values, dataset statistics, or the encoder's pretrained ones."""
    data = config.data
    size = data.image_size or model.encoder.input_size
    if data.mean is not None or data.std is not None:
        if data.mean is None or data.std is None or len(data.mean) != 3 or len(data.std) != 3:
            raise ConfigError("data.mean and data.std must both be given, three values each")
        mean, std = list(data.mean), list(data.std)
    elif data.normalisation == "dataset":
        mean, std = (list(map(float, v)) for v in dataset_statistics(train_paths, size=size))
    elif data.normalisation == "encoder":
        mean, std = list(model.encoder.mean), list(model.encoder.std)
    else:
        raise ConfigError(f"data.normalisation must be 'encoder' or 'dataset', got {data.normalisation!r}")
    return {"mean": mean, "std": std, "image_size": int(size)}


def transforms(config: RunConfig, norm: dict, device=None):
    """(train transform, eval transform) as albumentations pipelines: ending in normalised float
    tensors, or in uint8 ones when images are normalised on ``device`` (``data.normalise_on_device``;
    the model, given ``norm``'s mean and std, normalises them)."""
    args = (norm["image_size"], norm["mean"], norm["std"])
    normalise = not normalises_on_device(config.data.normalise_on_device, device)
    train = build_transform(config.data.train_transforms, *args, train=True, normalise=normalise)
    evaluation = build_transform(config.data.eval_transforms, *args, train=False, normalise=normalise)
    return train, evaluation


def _build_for_loading(config: RunConfig, hierarchy: Hierarchy, weights: dict) -> HierarchicalClassifier:
    """The model with ``weights`` loaded, built without initialising it first (on the meta device,
    then storage allocated and filled from ``weights``: the random initialisation that the load would
    overwrite took ~0.2 s for MobileNetV2 with 5 heads).  Falls back to an ordinary build when some
    tensor is not in the state dict (a non-persistent buffer would be left uninitialised)."""
    import torch

    with torch.device("meta"):
        model = build_model(config, hierarchy, weights=None)
    tensors = {name for name, _ in model.named_parameters()} | {name for name, _ in model.named_buffers()}
    if tensors == set(model.state_dict()):
        model = model.to_empty(device="cpu")
    else:
        model = build_model(config, hierarchy, weights=None)
    model.load_state_dict(weights)
    return model


def inference_model(
    config: RunConfig, hierarchy: Hierarchy, weights: dict, fold: bool = True, norm: dict | None = None
) -> HierarchicalClassifier:
    """The model that scores images after training, in ``train``'s final evaluation and in
    ``evaluate``/``predict`` alike (so both report the same numbers): ``weights`` loaded, eval mode,
    the encoder channels-last when the run trained that way, and with ``fold`` its BatchNorm layers
    folded into their convolutions (:func:`~seabed_hmc.models.batchnorm_fold.fold_batchnorm`: the same outputs
    up to rounding, MobileNetV2 ~1.3x faster on the CPU), so it must not be trained further or saved.
    ``norm`` (the record's normalisation): the mean and std it normalises uint8 images with."""
    import torch

    model = _build_for_loading(config, hierarchy, weights)
    model.eval()
    if norm is not None:
        model.set_input_normalisation(norm["mean"], norm["std"])
    if fold:
        folded = fold_batchnorm(model.encoder)
        log.debug("folded %d BatchNorm layers of the encoder into their convolutions", folded)
    if config.train.channels_last:
        model.encoder.to(memory_format=torch.channels_last)
    return model


def load_model(
    checkpoint: str | Path, fold: bool = True
) -> tuple[HierarchicalClassifier, Hierarchy, ModelCheckpoint]:
    """The trained model (:func:`inference_model`), its hierarchy and the checkpoint record, from the
    checkpoint file alone."""
    record = read_model(checkpoint, mmap=True)  # the optimizer's state is never read from disk
    hierarchy = record.built_hierarchy(str(checkpoint))
    model = inference_model(
        record.run_config(str(checkpoint)), hierarchy, record.model, fold, record.normalisation
    )
    return model, hierarchy, record
