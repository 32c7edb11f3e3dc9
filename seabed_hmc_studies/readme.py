"""The README's commands, as written: read from its ``bash`` code blocks, in order, and run.

:func:`main` (``python scripts/check_readme.py``) runs every command of README.md in order, as written,
from the project root, with the project's environment first on the PATH (as after ``. .venv/bin/activate``);
it prints each one's exit status and time and exits non-zero if any failed.  ``make test`` is skipped
unless ``--with-tests`` (it is what CI runs).  The commands need ``../shared/data`` beside the project;
``make demo`` comes first because two of them use its outputs.  ``tests/test_readme.py`` checks, without
running them, that each ``seabed-hmc`` line parses with the command-line parser and each ``make`` target
exists.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from seabed_hmc_studies import ROOT

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--with-tests", action="store_true", help="also run make test")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds allowed per command")
    parser.add_argument(
        "--from", dest="first", type=int, default=1, help="start at this command (1 = the first)"
    )
    args = parser.parse_args()
    failed = []
    # as after `. .venv/bin/activate` (README): the project's environment first on the PATH
    env = dict(os.environ, PATH=f"{ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}")
    for number, command in enumerate(readme_commands(README), start=1):
        if number < args.first:
            continue
        if command == "make test" and not args.with_tests:
            print(f"skipped  {command} (CI runs it; --with-tests to include it)")
            continue
        started = time.perf_counter()
        try:
            done = subprocess.run(
                ["bash", "-c", command],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=args.timeout,
            )
            status = done.returncode
        except subprocess.TimeoutExpired:
            done, status = None, "timeout"
        seconds = time.perf_counter() - started
        print(f"{'ok' if status == 0 else 'FAILED':8} {number}. {command}  ({seconds:.0f} s)", flush=True)
        if status != 0:
            failed.append(command)
            if done is not None:
                print("  " + "\n  ".join((done.stdout + done.stderr).strip().splitlines()[-15:]))
    print(f"{len(failed)} of the README's commands failed" if failed else "every README command ran")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
