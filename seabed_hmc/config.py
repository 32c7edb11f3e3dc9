"""Typed run configuration: dataclasses loaded from YAML, with ``--set key=value`` overrides.

A config is the complete record of a run; the resolved config is saved beside the results.  Unknown
keys, values of the wrong type and choices that do not exist (a ``Literal`` field) are errors naming
the key (dotted, e.g. ``train.epochs``), the file and the valid values, raised when the config loads,
before any data is read.  YAML is read with the safe loader and YAML 1.2 numbers (:func:`read_yaml`):
``1e-4`` is a float, as a user means it, not the string YAML 1.1 makes of it.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

import yaml

SPLIT_CHOICES = ("test", "val", "train", "all")  # what ``evaluate --split`` scores
# The choice fields.  Each list is the library's own registry, restated here so that the config (the
# lowest layer) imports nothing above it; tests/test_config.py checks that each equals its registry.
LossName = Literal["control", "imbalance", "focal", "rare_node", "flat"]  # losses.PRESETS
UncertaintyMode = Literal["bbma", "predictive", "aleatoric", "epistemic", "epistemic_kl", "gmu"]
WeightTarget = Literal["positive", "negative"]  # losses.objective.WEIGHT_TARGETS
FrequencyMode = Literal["exact", "propagated"]  # losses.FREQUENCY_MODES
Reduction = Literal["mean", "sum"]  # losses.objective.REDUCTIONS
Optimizer = Literal["adamw", "adam"]
Scheduler = Literal["cosine", "none"]
Normalisation = Literal["encoder", "dataset"]
OnDuplicate = Literal["error", "merge"]  # data.manifest.read_manifest
# validation metrics where higher is better (metrics.evaluate_predictions' keys)
SelectionMetric = Literal[
    "au_prc",
    "rare_node_ap",
    "f1_all",
    "f1_supported",
    "hierarchical_f1",
    "rare_node_recall",
    "rare_node_f1",
    "recall_all",
]
DecisionPolicy = Literal["fixed", "f1", "precision", "depth"]  # seabed_hmc.decisions
DecisionRule = Literal["closure", "gated"]
CalibrationMethod = Literal["none", "temperature", "platt"]  # seabed_hmc.calibration
TileUnits = Literal["pixels", "crs"]  # data.geo.tile_grid
Precision = Literal["auto", "bf16", "fp32"]  # engine.tiles.inference_dtype
DECISION_POLICIES = typing.get_args(DecisionPolicy)
DECISION_RULES = typing.get_args(DecisionRule)
CALIBRATION_METHODS = typing.get_args(CalibrationMethod)


class ConfigError(ValueError):
    """A configuration file or override is invalid."""


class _Yaml12Loader(yaml.SafeLoader):
    """The safe loader with YAML 1.2's floats: ``1e-4``, ``2E5`` and ``.5`` are numbers (YAML 1.1, which
    PyYAML implements, needs a dot and a signed exponent: ``1.0e-4``)."""


_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def read_yaml(stream: str | IO) -> Any:
    """YAML text or an open file as Python values: the safe loader, YAML 1.2 numbers.  The one YAML
    reader of configs, ``--set`` values and study settings."""
    return yaml.load(stream, Loader=_Yaml12Loader)  # noqa: S506 (a SafeLoader subclass)


@dataclass
class DataConfig:
    """Where the images and labels are, and how they are prepared."""

    manifest: str | None = None  # CSV manifest (DESIGN.md format); or:
    image_folder: str | None = None  # a nested folder tree Biota/Macroalgae/Kelp/img.jpg
    image_root: str | None = None  # image paths in the manifest are relative to this (default: its folder)
    hierarchy: str | None = None  # a hierarchy file; default: from the manifest's labels or the folders
    columns: dict[str, str] = field(default_factory=dict)  # manifest column renames, e.g. {image: path}
    allow_outside_root: bool = False
    on_duplicate: OnDuplicate = "error"  # an image listed twice: "error", or "merge" its rows (read_manifest)
    image_size: int | None = None  # default: the encoder's input size
    train_transforms: list[dict[str, Any]] | None = None  # albumentations entries; None = the defaults
    eval_transforms: list[dict[str, Any]] | None = None
    normalisation: Normalisation = "encoder"  # "encoder" (pretrained mean/std) or "dataset" (computed)
    mean: list[float] | None = None  # explicit statistics override normalisation
    std: list[float] | None = None
    validation_fraction: float = 0.15  # used when the manifest has no split column
    max_bad_fraction: float = 0.05
    workers: int | None = None  # image-loading processes; default: 2, on a GPU all cores but 2 (<= 16)
    normalise_on_device: bool | Literal["auto"] = "auto"  # uint8 images normalised by the model (auto: GPU)


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
    name: LossName = "rare_node"
    uncertainty: UncertaintyMode | None = None  # None: the preset's (bbma)
    weight_target: WeightTarget = "positive"
    omega: float = 0.25
    frequency: FrequencyMode = "exact"
    focal_min: float = 0.25
    k: float = 1.0
    reduction: Reduction = "mean"


@dataclass
class TrainConfig:
    epochs: int = 20
    batch_size: int = 32
    optimizer: Optimizer = "adamw"  # adam: the heads' L2 is weight_decay / heads, engine/train.py)
    learning_rate: float = 1e-3
    encoder_learning_rate: float | None = None  # default: learning_rate / 10 for a trainable encoder
    weight_decay: float = 1e-4
    scheduler: Scheduler = "cosine"
    seed: int = 0
    deterministic: bool = False
    device: str = "auto"  # auto | cpu | cuda | cuda:N (engine/device.py; auto: a GPU if torch sees one)
    channels_last: bool = True
    bf16: bool | Literal["auto"] = "auto"  # bf16 autocast of the encoder (auto: where its device has it)
    feature_cache: bool = True  # frozen encoders: compute features once
    compile: bool = False  # torch.compile the encoder in place (long runs on a GPU; compiling takes minutes)
    cache_dir: str | None = None  # default: $SEABED_HMC_CACHE or ~/.cache/seabed_hmc/features (shared)
    augmented_views: int = 0  # frozen + cache: augmented views per training image (0 = eval transform)
    # write last.pt (to resume) and best.pt at most this often, and at the end; 0 = every epoch
    checkpoint_minutes: float = 1.0
    selection_metric: SelectionMetric = "au_prc"
    threshold: float = 0.5
    progress: bool = True


@dataclass
class DecisionConfig:
    """How probabilities become predictions (seabed_hmc/decisions.py): fit on the validation split after
    training and stored in the checkpoint; ``seabed-hmc calibrate`` refits it on any labelled manifest."""

    policy: DecisionPolicy = "f1"
    precision: float = 0.8  # the precision policy's target
    min_positives: int = 5  # fewer validation positives: the node borrows its depth's threshold
    rule: DecisionRule = "closure"
    threshold: float = 0.5  # the fixed policy's
    # per-node probability calibration fit on validation before the thresholds (reliability.png)
    calibration: CalibrationMethod = "none"


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    decision: DecisionConfig = field(default_factory=DecisionConfig)
    out: str = "runs/run"


@dataclass
class TileConfig:
    """predict-tiles' settings (seabed_hmc/engine/tiles.py).  The command's flags and a YAML file
    (``predict-tiles --config FILE``, a mapping of these keys; flags given win) build this one object."""

    tile_size: float | None = None  # in units; default: the model's input size in pixels
    stride: float | None = None  # in units; default: the tile size (no overlap)
    units: TileUnits = "pixels"
    cell: int | None = None  # output cell in input pixels; default: the stride
    roi: list[float] | None = None  # west, south, east, north in the raster's CRS
    bands: list[int] | None = None  # 1 or 3 band numbers; default: RGB, or band 1 repeated
    scale: list[float] | None = None  # low, high per band mapped to 0..255; default: dtype or percentiles
    nodata: float | None = None  # an extra value marking invalid pixels
    max_invalid: float = 0.5  # tiles with a larger share of invalid pixels are skipped (and counted)
    decision: str | None = None  # fixed | checkpoint | a decision file; default: the checkpoint's rule
    threshold: float | None = None  # a fixed threshold for every node instead
    batch_size: int | None = None  # default: 32 on the CPU, 256 on a CUDA GPU (engine/device.default_batch)
    workers: int | None = None  # tile-reading processes; default: by cores (engine/tiles.default_workers)
    precision: Precision = "auto"  # auto: bf16 autocast on a CUDA GPU that has it, fp32 on the CPU
    compile: bool = False  # torch.compile the model (worth it for long runs on a GPU)
    save_every: int = 20  # batches between saved partial states (a stopped run resumes)
    progress: bool = True
    stop_after: int | None = None  # end after this many batches (time-boxed runs; resume later)
    device: str = "auto"  # auto | cpu | cuda | cuda:N

    def __post_init__(self) -> None:
        checks = [
            ("roi", self.roi is None or len(self.roi) == 4, "give west, south, east, north"),
            ("bands", self.bands is None or len(self.bands) in (1, 3), "give 1 or 3 band numbers"),
            ("scale", self.scale is None or len(self.scale) % 2 == 0, "give low, high pairs, one per band"),
            ("max_invalid", 0 <= self.max_invalid <= 1, "give a share between 0 and 1"),
            ("batch_size", self.batch_size is None or self.batch_size >= 1, "give at least 1"),
            ("save_every", self.save_every >= 1, "give at least 1"),
            ("tile_size", self.tile_size is None or self.tile_size > 0, "give a positive size"),
            ("stride", self.stride is None or self.stride > 0, "give a positive stride"),
            ("cell", self.cell is None or self.cell >= 1, "give at least 1 pixel"),
        ]
        for key, good, what in checks:
            if not good:
                raise ConfigError(f"predict-tiles {key}={getattr(self, key)!r}: {what}")

    @property
    def scale_pairs(self) -> tuple[tuple[float, float], ...] | None:
        """``scale`` as (low, high) per band, as :class:`~seabed_hmc.data.geo.BandSettings` takes it."""
        if self.scale is None:
            return None
        values = [float(v) for v in self.scale]
        return tuple(zip(values[::2], values[1::2], strict=True))


def load_tile_config(path: str | Path | None = None, given: dict[str, Any] | None = None) -> TileConfig:
    """A :class:`TileConfig` from a YAML file (or the defaults) with ``given`` values on top (the flags
    the user gave; None means not given).  Unknown keys and wrong types fail naming the key."""
    tree = _read_config_file(path, "a mapping of predict-tiles settings (tile_size, stride, ...)")
    tree |= {key: value for key, value in (given or {}).items() if value is not None}
    where = f" in {path}" if path is not None else ""
    return _build(TileConfig, tree, "", where)


# ---------------------------------------------------------------------------------------- conversion
def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(option) for option in typing.get_args(annotation))
    if origin is Literal:
        return " or ".join(repr(choice) for choice in typing.get_args(annotation))
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
    if origin is Literal:
        choices = typing.get_args(annotation)
        if value in choices and type(value) in {type(choice) for choice in choices}:
            return value
        close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"{key}{where}: {value!r} is not one of {list(choices)}{hint}")
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


def parse_override(text: str, example: str = "train.epochs=5") -> tuple[str, Any]:
    """``"train.epochs=5"`` -> ("train.epochs", 5); the value is read as YAML 1.2 (numbers, lists, null).
    The one ``--set`` parser (run configs and the studies' settings)."""
    if "=" not in text or not text.split("=", 1)[0].strip():
        raise ConfigError(f"--set {text!r}: expected key=value, e.g. {example}")
    key, raw = text.split("=", 1)
    return key.strip(), read_yaml(raw) if raw.strip() else ""


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Read a YAML run config (or start from the defaults) and apply ``key=value`` overrides."""
    tree = _read_config_file(path, "a mapping of sections (data, encoder, ...)")
    where = f" in {path}" if path is not None else ""
    for text in overrides:
        key, value = parse_override(text)
        _set_dotted(tree, key, value)
    if overrides:
        where += " (with --set overrides)" if where else " (--set overrides)"
    return _build(RunConfig, tree, "", where)


def _read_config_file(path: str | Path | None, expected: str) -> dict:
    """The mapping at the top of a YAML config file ({} without a file)."""
    if path is None:
        return {}
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"config file {path} does not exist")
    with open(path, encoding="utf-8") as handle:
        try:
            tree = read_yaml(handle) or {}
        except yaml.YAMLError as error:
            raise ConfigError(f"{path} is not valid YAML: {error}") from None
    if not isinstance(tree, dict):
        raise ConfigError(f"{path}: the top level must be {expected}")
    return tree


def config_from_dict(tree: dict, source: str = "a saved record") -> RunConfig:
    """A RunConfig from a plain dict (e.g. the resolved config stored in a checkpoint)."""
    return _build(RunConfig, tree, "", f" in {source}")


def config_to_dict(config: RunConfig) -> dict:
    return dataclasses.asdict(config)


def save_config(config: RunConfig, path: str | Path) -> None:
    """Write the resolved config as YAML (the run's complete record)."""
    Path(path).write_text(yaml.safe_dump(config_to_dict(config), sort_keys=False))
