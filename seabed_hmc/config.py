"""Typed run configuration: dataclasses loaded from YAML, with ``--set key=value`` overrides.

A config is the complete record of a run; the resolved config is saved beside the results.  Unknown
keys and values of the wrong type are errors naming the key (dotted, e.g. ``train.epochs``) and the
file.  YAML is read with the safe loader only.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

SPLIT_CHOICES = ("test", "val", "train", "all")  # what ``evaluate --split`` scores
DECISION_POLICIES = ("fixed", "f1", "precision", "depth")  # seabed_hmc.decisions
DECISION_RULES = ("closure", "gated")
CALIBRATION_METHODS = ("none", "temperature", "platt")  # seabed_hmc.calibration


class ConfigError(ValueError):
    """A configuration file or override is invalid."""


@dataclass
class DataConfig:
    """Where the images and labels are, and how they are prepared."""

    manifest: str | None = None  # CSV manifest (DESIGN.md format); or:
    image_folder: str | None = None  # a nested folder tree Biota/Macroalgae/Kelp/img.jpg
    image_root: str | None = None  # image paths in the manifest are relative to this (default: its folder)
    hierarchy: str | None = None  # a hierarchy file; default: from the manifest's labels or the folders
    columns: dict[str, str] = field(default_factory=dict)  # manifest column renames, e.g. {image: path}
    allow_outside_root: bool = False
    on_duplicate: str = "error"  # an image listed twice: "error", or "merge" its rows (read_manifest)
    image_size: int | None = None  # default: the encoder's input size
    train_transforms: list[dict[str, Any]] | None = None  # albumentations entries; None = the defaults
    eval_transforms: list[dict[str, Any]] | None = None
    normalisation: str = "encoder"  # "encoder" (pretrained mean/std) or "dataset" (computed)
    mean: list[float] | None = None  # explicit statistics override normalisation
    std: list[float] | None = None
    validation_fraction: float = 0.15  # used when the manifest has no split column
    max_bad_fraction: float = 0.05
    workers: int = 2


@dataclass
class EncoderConfig:
    """The timm encoder and how it is weakened (METHOD.md section 8)."""

    name: str | None = None  # a timm model name; may be left out when weights is a short name
    weights: str | None = None  # None/"random", a local file, or a short name (mobilenetv2_imagenet)
    freeze: bool = False
    noise_alpha: float = 0.0
    # Not in METHOD.md: re-estimate BatchNorm statistics on this many training images after building
    # (0 = off, as specified).  Noise-mixing a frozen MobileNetV2 otherwise gives every image the
    # same features (docs/results/limited_data.md).
    batchnorm_refit: int = 0
    truncate: int | None = None
    input_size: int | None = None


@dataclass
class HeadConfig:
    heads: int | None = None  # None: the loss preset's ensemble size (1 for control, 20 for rare_node)
    hidden: int | None = None  # None: the encoder's feature size
    layers: int = 2
    dropout: float = 0.7


@dataclass
class LossConfig:
    name: str = "rare_node"  # control | imbalance | focal | rare_node | flat
    uncertainty: str | None = None  # None: the preset's (bbma); bbma predictive aleatoric epistemic ...
    weight_target: str = "positive"
    omega: float = 0.25
    frequency: str = "exact"
    focal_min: float = 0.25
    k: float = 1.0
    reduction: str = "mean"


@dataclass
class TrainConfig:
    epochs: int = 20
    batch_size: int = 32
    optimizer: str = "adamw"  # adamw | adam (adam: the heads' L2 is weight_decay / heads, engine/train.py)
    learning_rate: float = 1e-3
    encoder_learning_rate: float | None = None  # default: learning_rate / 10 for a trainable encoder
    weight_decay: float = 1e-4
    scheduler: str = "cosine"  # cosine | none
    seed: int = 0
    deterministic: bool = False
    device: str = "auto"  # auto | cpu | cuda | cuda:N (engine/device.py; auto: a GPU if torch sees one)
    channels_last: bool = True
    bf16: bool | str = (
        "auto"  # auto | true | false: bf16 autocast of the encoder (true only if the CPU has it)
    )
    feature_cache: bool = True  # frozen encoders: compute features once
    cache_dir: str | None = None  # default: $SEABED_HMC_CACHE or ~/.cache/seabed_hmc/features (shared)
    augmented_views: int = 0  # frozen + cache: augmented views per training image (0 = eval transform)
    # write last.pt (to resume) and best.pt at most this often, and at the end; 0 = every epoch
    checkpoint_minutes: float = 1.0
    selection_metric: str = "au_prc"
    threshold: float = 0.5
    progress: bool = True


@dataclass
class DecisionConfig:
    """How probabilities become predictions (seabed_hmc/decisions.py): fit on the validation split after
    training and stored in the checkpoint; ``seabed-hmc calibrate`` refits it on any labelled manifest."""

    policy: str = field(default="f1", metadata={"choices": DECISION_POLICIES})
    precision: float = 0.8  # the precision policy's target
    min_positives: int = 5  # fewer validation positives: the node borrows its depth's threshold
    rule: str = field(default="closure", metadata={"choices": DECISION_RULES})
    threshold: float = 0.5  # the fixed policy's
    # per-node probability calibration fit on validation before the thresholds (reliability.png)
    calibration: str = field(default="none", metadata={"choices": CALIBRATION_METHODS})


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    decision: DecisionConfig = field(default_factory=DecisionConfig)
    out: str = "runs/run"


# ---------------------------------------------------------------------------------------- conversion
def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def _convert(value: Any, annotation: Any, key: str, where: str) -> Any:
    """Check ``value`` against a (resolved) annotation; ints are accepted for floats."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        real = [option for option in options if option is not type(None)]
        if len(real) == 1:  # Optional[X]: X's own, more precise, error
            return _convert(value, real[0], key, where)
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _convert(value, option, key, where)
            except ConfigError as error:
                errors.append(error)
        raise ConfigError(f"{key}{where}: expected {_type_name(annotation)}, got {value!r}")
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}{where}: expected a mapping of settings, got {value!r}")
        return _build(annotation, value, key, where)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}{where}: expected a list, got {value!r}")
        (item,) = typing.get_args(annotation)
        return [_convert(v, item, f"{key}[{i}]", where) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}{where}: expected a mapping, got {value!r}")
        key_type, value_type = typing.get_args(annotation)
        return {
            _convert(k, key_type, key, where): _convert(v, value_type, f"{key}.{k}", where)
            for k, v in value.items()
        }
    if annotation is Any:
        return value
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation is bool and not isinstance(value, bool):
        raise ConfigError(f"{key}{where}: expected true or false, got {value!r}")
    if annotation in (int, float) and isinstance(value, bool):
        raise ConfigError(f"{key}{where}: expected {annotation.__name__}, got {value!r}")
    if not isinstance(value, annotation):
        raise ConfigError(
            f"{key}{where}: expected {annotation.__name__}, got {value!r} ({type(value).__name__})"
        )
    return value


def _build(cls: type, values: dict, prefix: str, where: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in values if k not in names]
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(str(key), names, n=3)
        hint = f"; did you mean {close}?" if close else f"; known keys: {names}"
        raise ConfigError(f"unknown key {_join(prefix, key)!r}{where}{hint}")
    converted = {name: _convert(values[name], hints[name], _join(prefix, name), where) for name in values}
    for item in dataclasses.fields(cls):
        choices = item.metadata.get("choices")
        if choices and item.name in converted and converted[item.name] not in choices:
            raise ConfigError(
                f"{_join(prefix, item.name)}{where}: {converted[item.name]!r} is not one of {list(choices)}"
            )
    return cls(**converted)


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else str(key)


def _set_dotted(tree: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {dotted}: {part!r} is a value, not a section")
    node[parts[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """``"train.epochs=5"`` -> ("train.epochs", 5); the value is read as YAML (numbers, lists, null)."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected key=value, e.g. train.epochs=5")
    key, raw = text.split("=", 1)
    return key.strip(), yaml.safe_load(raw) if raw.strip() else ""


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Read a YAML run config (or start from the defaults) and apply ``key=value`` overrides."""
    tree: dict = {}
    where = ""
    if path is not None:
        path = Path(path)
        where = f" in {path}"
        if not path.exists():
            raise FileNotFoundError(f"config file {path} does not exist")
        with open(path, encoding="utf-8") as handle:
            try:
                tree = yaml.safe_load(handle) or {}
            except yaml.YAMLError as error:
                raise ConfigError(f"{path} is not valid YAML: {error}") from None
        if not isinstance(tree, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of sections (data, encoder, ...)")
    for text in overrides:
        key, value = parse_override(text)
        _set_dotted(tree, key, value)
    if overrides:
        where += " (with --set overrides)" if where else " (--set overrides)"
    return _build(RunConfig, tree, "", where)


def config_from_dict(tree: dict, source: str = "a saved record") -> RunConfig:
    """A RunConfig from a plain dict (e.g. the resolved config stored in a checkpoint)."""
    return _build(RunConfig, tree, "", f" in {source}")


def config_to_dict(config: RunConfig) -> dict:
    return dataclasses.asdict(config)


def save_config(config: RunConfig, path: str | Path) -> None:
    """Write the resolved config as YAML (the run's complete record)."""
    Path(path).write_text(yaml.safe_dump(config_to_dict(config), sort_keys=False))
