"""How an error names the option that fixes it, in the words of the place the user is.

The same library code is reached from Python (``read_manifest(..., root=...)``), from a YAML config
(``seabed-hmc train``, ``ablate``: ``data.image_root``) and from command-line flags (``seabed-hmc
evaluate --root``).  An error that suggests an option spells it with :func:`option`, which looks the
option up in :data:`OPTIONS` and answers for the surface in force (set by the CLI with
:func:`surface`), or None where that surface has no such option: the message then leaves that remedy
out.  ``tests/test_remedies.py`` checks that every spelling here exists (each flag on each command
named, each config key in :class:`~seabed_hmc.config.RunConfig`) and that no message spells a Python
argument by hand.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

PYTHON = "python"
CONFIG = "config"


@dataclass(frozen=True)
class Option:
    """One remedy's spellings: a Python argument, a config key, a flag that exists on ``commands``.
    ``switch``: a yes/no option (the flag takes no value; the config value is ``true``)."""

    python: str  # an argument name, or a phrase that already says how ("kind='edges'")
    config: str | None = None  # a dotted config key
    flag: str | None = None
    commands: tuple[str, ...] = field(default_factory=tuple)
    switch: bool = False


MANIFEST_COMMANDS = ("evaluate",)  # the commands that read a manifest with read_manifest
OPTIONS: dict[str, Option] = {
    "root": Option("root", "data.image_root", "--root", MANIFEST_COMMANDS),
    "allow_outside_root": Option(
        "allow_outside_root", "data.allow_outside_root", "--allow-outside-root", MANIFEST_COMMANDS, True
    ),
    "columns": Option("columns", "data.columns", "--columns", MANIFEST_COMMANDS),
    "manifest_encoding": Option("encoding"),
    "on_duplicate": Option("on_duplicate", "data.on_duplicate"),
    "path_column": Option("column", None, "--column", ("hierarchy",)),
    "hierarchy_encoding": Option("encoding", None, "--encoding", ("hierarchy",)),
    "path_duplicates": Option("on_duplicate", None, "--on-duplicate", ("hierarchy",)),
    "table_columns": Option("id_column=, parent_column= or name_column= (or naming='id')"),
    "arff_kind": Option("kind"),
    "encoder_name": Option("name", "encoder.name"),
    "crs": Option("crs", None, "--crs", ("chips",)),
    "split": Option("split", None, "--split", ("evaluate", "calibrate")),
}

_surface: ContextVar[str] = ContextVar("seabed_hmc_surface", default=PYTHON)


@contextmanager
def surface(name: str) -> Iterator[None]:
    """Spell remedies for ``name``: ``"python"``, ``"config"`` or a CLI command (``"evaluate"``)."""
    token = _surface.set(name)
    try:
        yield
    finally:
        _surface.reset(token)


def option(name: str, value: object = None, why: str = "") -> str | None:
    """The option ``name`` (a key of :data:`OPTIONS`), set to ``value`` where one is given, as the user
    in the current surface writes it, with its verb ("pass --root DIR", "set data.image_root in the
    config") and ``why`` after it; None where this surface has no such option."""
    spelled = _spell(OPTIONS[name], value)
    return None if spelled is None else f"{spelled} {why}".rstrip()


def _spell(spelled: Option, value: object) -> str | None:
    where = _surface.get()
    if where == PYTHON:
        if "=" in spelled.python:
            return f"pass {spelled.python}"
        shown = True if spelled.switch else value
        return f"pass {spelled.python}=" + ("" if shown is None else repr(shown))
    if where == CONFIG:
        if spelled.config is None:
            return None
        shown = "true" if spelled.switch else value
        return f"set {spelled.config}" + ("" if shown is None else f": {shown}") + " in the config (or --set)"
    if not spelled.flag or where not in spelled.commands:
        return None
    return f"pass {spelled.flag}" + ("" if spelled.switch or value is None else f" {value}")


def remedies(*choices: str | None) -> str:
    """ "a, b, or c" from the remedies that exist here (None entries, from :func:`option`, dropped)."""
    kept = [choice for choice in choices if choice]
    if len(kept) <= 1:
        return "".join(kept)
    return ", ".join(kept[:-1]) + ", or " + kept[-1]
