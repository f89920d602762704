"""Run every benchmark module and write docs/benchmarks.md.

Each module `bench/<name>.py` (names starting with `_` excluded) defines `run(quick: bool) -> str`, which measures its part and
returns a Markdown section (a `##` heading, the command, the figures and their ratio to the
reference measured in the same run). `--quick` shrinks the inputs for a smoke run.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import subprocess
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _modules() -> list[str]:
    return sorted(
        f"bench.{path.stem}"
        for path in (ROOT / "bench").glob("*.py")
        if not path.stem.startswith("_")
    )


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {kib / 1024 / 1024:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return f"{cpu}, {os.cpu_count()} cores{memory}, Python {platform.python_version()}, {platform.system()} {platform.release()}"


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller inputs, for a smoke run")
    parser.add_argument(
        "--only", action="append", default=[], help="run only this module (repeatable)"
    )
    parser.add_argument("--output", default=str(ROOT / "docs" / "benchmarks.md"))
    arguments = parser.parse_args()
    selected = [
        m for m in _modules() if not arguments.only or m.rsplit(".", 1)[-1] in arguments.only
    ]
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    sections: list[str] = []
    failed = 0
    header = [
        "# Benchmarks",
        "",
        f"Measured with `make bench` (`python -m bench{' --quick' if arguments.quick else ''}`) on "
        f"{datetime.now(UTC):%Y-%m-%d}, commit {commit or 'unknown'}.",
        f"Machine: {_machine()}.",
        "",
        "Each figure sits next to a reference measured in the same run, because these machines "
        "are noisy: compare the ratios, not the absolute numbers.",
        "",
    ]
    output = Path(arguments.output)
    for name in selected:
        started = time.monotonic()
        print(f"bench: running {name}", file=sys.stderr)
        try:
            module = importlib.import_module(name)
            sections.append(module.run(arguments.quick))
        except Exception as error:  # one broken benchmark must not discard the others
            failed += 1
            traceback.print_exc()
            sections.append(f"## {name}\n\nFailed: {type(error).__name__}: {error}\n")
        print(f"bench: {name} done in {time.monotonic() - started:.0f} s", file=sys.stderr)
        # Written after every module, so that an interrupted run keeps what it measured.
        output.write_text("\n".join(header + sections) + "\n")
    print(f"bench: wrote {output}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
