"""The README's commands, as written: read from its ``bash`` code blocks, in order.

``scripts/check_readme.py`` runs them on this machine; ``tests/test_readme.py`` checks, without
running them, that each ``seabed-hmc`` line parses with the command-line parser and each ``make``
target exists.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def readme_commands(path: Path = README) -> list[str]:
    """Every command line of the file's ``bash`` code blocks, comments removed, in order."""
    commands = []
    for block in re.findall(r"^```bash\n(.*?)^```", path.read_text(encoding="utf-8"), re.M | re.S):
        for line in block.splitlines():
            command = re.sub(r"\s+#.*$", "", line).strip()
            if command and not command.startswith("#"):
                commands.append(command)
    return commands
