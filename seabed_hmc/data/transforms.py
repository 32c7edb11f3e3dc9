"""Albumentations pipelines built from plain entries (a config's ``transforms:`` list).

An entry is ``{"name": "HorizontalFlip", "p": 0.5}``: an albumentations class name (2.x names and
arguments, e.g. ``RandomResizedCrop(size=(h, w), scale=...)``) and its keyword arguments.  Lists become
tuples (YAML has no tuples).  An entry whose class needs a target size (``size``, or ``height`` and
``width``) and gives none gets ``image_size``.  Composition classes take their children the same way:
``{"name": "OneOf", "p": 0.3, "transforms": [{"name": "Blur"}, {"name": "GaussNoise"}]}``.

:func:`build_transform` appends the fitting to ``image_size``, ``Normalize(mean, std)`` and
``ToTensorV2``, so the pipeline maps an (H, W, 3) uint8 array to a (3, h, w) float32 tensor; with
``normalise=False`` it leaves out ``Normalize`` and gives a (3, h, w) uint8 tensor that the model
normalises on its device (``HierarchicalClassifier.set_input_normalisation``).
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Mapping, Sequence
from typing import Any

import albumentations as A
from albumentations.pytorch import ToTensorV2

#: Training augmentation: a random crop of 60-100% of the image, flips both ways and quarter turns
#: (seafloor imagery shot looking down has no "up"), and a mild colour jitter without hue shifts
#: (colour tells red, brown and green algae apart).
DEFAULT_TRAIN_TRANSFORMS: tuple[dict[str, Any], ...] = (
    {"name": "RandomResizedCrop", "scale": (0.6, 1.0)},
    {"name": "HorizontalFlip", "p": 0.5},
    {"name": "VerticalFlip", "p": 0.5},
    {"name": "RandomRotate90", "p": 0.5},
    {"name": "ColorJitter", "brightness": 0.2, "contrast": 0.2, "saturation": 0.1, "hue": 0.0, "p": 0.5},
)
#: Evaluation: nothing before the fitting to ``image_size``.
DEFAULT_EVAL_TRANSFORMS: tuple[dict[str, Any], ...] = ()
#: How the image is brought to ``image_size`` at the end: stretched, or its shorter side scaled to the
#: size and the centre cropped (keeps the aspect ratio).
FITS = ("resize", "center_crop")
_APPENDED = ("Normalize", "ToTensorV2")


class TransformSpecError(ValueError):
    """A transform entry is invalid; the message names the entry (``transforms[2]``) and the problem."""


def build_transform(
    spec: Sequence[Mapping[str, Any]] | None,
    image_size: int | tuple[int, int],
    mean: Sequence[float],
    std: Sequence[float],
    train: bool,
    fit: str = "resize",
    normalise: bool = True,
) -> A.Compose:
    """An albumentations pipeline: ``spec``, then fitting to ``image_size``, Normalize, ToTensorV2.

    Args:
        spec: the entries applied first; None takes :data:`DEFAULT_TRAIN_TRANSFORMS` when ``train``,
            else :data:`DEFAULT_EVAL_TRANSFORMS` (a given spec is used as it is, whatever ``train``).
        image_size: the output size, an int (square) or (height, width).
        mean, std: per-channel normalisation in [0, 1] units (e.g. from ``dataset_statistics``).
        train: picks the default spec.
        fit: ``"resize"`` (stretch to the size) or ``"center_crop"`` (shorter side to the size, then
            the centre).
        normalise: False leaves ``Normalize`` out: the output stays uint8 (checked per image: an entry
            that turns the image to float then stops the run with the remedy), for normalising on the
            device.

    Raises:
        TransformSpecError: an entry that is not a mapping, has no or an unknown name (with close
            names), unknown or missing arguments (with the accepted ones), or arguments the class
            rejects; or ``Normalize``/``ToTensorV2`` in the spec (they are appended here).
    """
    height, width = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if fit not in FITS:
        raise ValueError(f"fit must be one of {list(FITS)}, not {fit!r}")
    for name, values in (("mean", mean), ("std", std)):
        if len(values) != 3:
            raise ValueError(f"{name} needs three values (R, G, B), got {list(values)}")
    if any(s <= 0 for s in std):
        raise ValueError(f"std values must be positive, got {list(std)}")
    if spec is None:
        spec = DEFAULT_TRAIN_TRANSFORMS if train else DEFAULT_EVAL_TRANSFORMS
    steps = _build_entries(spec, (height, width), "transforms")
    if fit == "resize":
        steps.append(A.Resize(height=height, width=width))
    else:
        steps += [A.SmallestMaxSize(max_size_hw=(height, width)), A.CenterCrop(height=height, width=width)]
    if normalise:
        steps.append(
            A.Normalize(
                mean=tuple(float(m) for m in mean), std=tuple(float(s) for s in std), max_pixel_value=255.0
            )
        )
    else:
        steps.append(A.Lambda(image=_still_uint8, name="still_uint8"))
    return A.Compose([*steps, ToTensorV2()])


def _still_uint8(image, **_):
    """The image when it is uint8 (what normalising on the device needs); else a clear stop."""
    if image.dtype != "uint8":
        raise TransformSpecError(
            f"a transform turned the image into {image.dtype}, but images normalised on the device must "
            "stay uint8: remove the entry that converts it (e.g. ToFloat), or set "
            "data.normalise_on_device=false"
        )
    return image if image.flags.writeable else image.copy()  # torch warns on read-only arrays


def available_transforms() -> dict[str, type]:
    """Albumentations transform and composition classes by name (what an entry's ``name`` may be)."""
    found = {}
    for name in dir(A):
        value = getattr(A, name)
        if (
            not name.startswith("_")
            and inspect.isclass(value)
            and issubclass(value, (A.BasicTransform, A.BaseCompose))
            and not inspect.isabstract(value)
        ):
            found[name] = value
    return found


def _build_entries(spec: Any, size: tuple[int, int], where: str) -> list[Any]:
    if isinstance(spec, (str, Mapping)) or not isinstance(spec, Sequence):
        raise TransformSpecError(
            f"{where} must be a list of entries like {{'name': 'HorizontalFlip', 'p': 0.5}}, not {spec!r}"
        )
    return [_build_entry(entry, size, f"{where}[{number}]") for number, entry in enumerate(spec)]


def _build_entry(entry: Any, size: tuple[int, int], where: str) -> Any:
    if not isinstance(entry, Mapping):
        raise TransformSpecError(
            f"{where} is {entry!r}, not a mapping like {{'name': 'HorizontalFlip', 'p': 0.5}}"
        )
    arguments = dict(entry)
    name = arguments.pop("name", None)
    if not isinstance(name, str) or not name:
        raise TransformSpecError(
            f"{where} has no 'name' (the albumentations class, e.g. 'HorizontalFlip'): {entry}"
        )
    cls = _transform_class(name, where)
    children = arguments.pop("transforms", None) if issubclass(cls, A.BaseCompose) else None
    arguments = {key: _tupled(value) for key, value in arguments.items()}
    if issubclass(cls, A.BaseCompose):
        if children is None:
            raise TransformSpecError(
                f"{where} ({name}) needs 'transforms': the list of entries it picks from"
            )
        arguments["transforms"] = _build_entries(children, size, f"{where}.transforms")
    _fill_size(cls, arguments, size)
    _check_arguments(cls, arguments, name, where)
    try:
        return cls(**arguments)
    except (TypeError, ValueError) as error:
        raise TransformSpecError(
            f"{where} ({name}): invalid arguments {arguments}: {_brief(error)}"
        ) from None


def _transform_class(name: str, where: str) -> type:
    if name in _APPENDED:
        raise TransformSpecError(
            f"{where}: {name} is appended by build_transform (give mean and std instead); remove the entry"
        )
    known = available_transforms()
    if name in known:
        return known[name]
    by_lower = {key.lower(): key for key in known}
    close = (
        [by_lower[name.lower()]] if name.lower() in by_lower else difflib.get_close_matches(name, known, n=3)
    )
    hint = f"; did you mean {close}?" if close else ""
    raise TransformSpecError(
        f"{where}: unknown transform {name!r}{hint} (names are albumentations {A.__version__} class names, "
        "e.g. 'HorizontalFlip', 'RandomResizedCrop')"
    )


def _fill_size(cls: type, arguments: dict[str, Any], size: tuple[int, int]) -> None:
    """Give ``size`` (or ``height`` and ``width``) = ``image_size`` to a class that needs one and got none."""
    parameters = inspect.signature(cls).parameters

    def required(key: str) -> bool:
        return key in parameters and parameters[key].default is inspect.Parameter.empty

    if required("size") and "size" not in arguments:
        arguments["size"] = size
    if required("height") and required("width") and "height" not in arguments and "width" not in arguments:
        arguments["height"], arguments["width"] = size


def _check_arguments(cls: type, arguments: dict[str, Any], name: str, where: str) -> None:
    parameters = inspect.signature(cls).parameters
    accepted = [
        key
        for key, parameter in parameters.items()
        if parameter.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    ]
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        unknown = [key for key in arguments if key not in accepted]
        if unknown:
            close = {key: difflib.get_close_matches(key, accepted, n=1) for key in unknown}
            hints = "; ".join(f"{key!r}: did you mean {match[0]!r}?" for key, match in close.items() if match)
            raise TransformSpecError(
                f"{where} ({name}): unknown argument(s) {unknown}{' (' + hints + ')' if hints else ''}; "
                f"{name} accepts {accepted}"
            )
    missing = [
        key
        for key, parameter in parameters.items()
        if parameter.default is inspect.Parameter.empty
        and parameter.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
        and key not in arguments
    ]
    if missing:
        raise TransformSpecError(
            f"{where} ({name}): missing argument(s) {missing}; {name} accepts {accepted}"
        )


def _brief(error: Exception) -> str:
    """A pydantic validation report (how albumentations rejects values) on one line: ``field: problem``."""
    lines = str(error).splitlines()
    if len(lines) < 3 or "validation error" not in lines[0]:
        return str(error)
    problems, field = [], ""
    for line in lines[1:]:
        if not line.startswith(" "):
            field = line.strip()
        elif not line.strip().startswith("For further information"):
            problems.append(f"{field}: {line.strip()}")
    return "; ".join(problems) or str(error)


def _tupled(value: Any) -> Any:
    """Lists (from YAML) as tuples, recursively; albumentations declares ranges and sizes as tuples."""
    if isinstance(value, list):
        return tuple(_tupled(item) for item in value)
    return value
