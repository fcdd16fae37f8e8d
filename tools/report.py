"""Shared by the benchmark tools: each tool owns one section of BENCHMARKS.md and rewrites only it,
so the file always holds the latest figures of every benchmark with the command that made them."""

from __future__ import annotations

import datetime as _dt
import platform
import re
import shlex
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"
HEADER = ("# Benchmarks\n\nEvery section is rewritten by the tool named in it; numbers are measured, not typed. "
          "Real-speech results come first; sections measured on synthesized voices say so.\n")


def machine_line() -> str:
    import os

    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def _section_pattern(name: str) -> re.Pattern:
    return re.compile(rf"<!-- BEGIN {re.escape(name)} -->.*?<!-- END {re.escape(name)} -->", re.S)


def update_section(name: str, body: str, command: str | None = None, replaces: tuple[str, ...] = ()) -> Path:
    """Replace (or append) the section `name` in BENCHMARKS.md with `body`, stamped with the
    command line, date and machine. `replaces`: sections of a superseded benchmark; they are
    removed, and a new section takes the place of the first one found."""
    command = command or "python " + " ".join(shlex.quote(a) for a in sys.argv)
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    block = (f"<!-- BEGIN {name} -->\n{body.rstrip()}\n\n"
             f"_Command: `{command}` — {stamp}, {machine_line()}._\n<!-- END {name} -->")
    text = BENCHMARKS.read_text() if BENCHMARKS.exists() else HEADER
    pattern = _section_pattern(name)
    for old in replaces:
        old_pattern = _section_pattern(old)
        if not old_pattern.search(text):
            continue
        if pattern.search(text):
            text = re.sub(rf"\n*{old_pattern.pattern}\n*", "\n\n", text, count=1, flags=re.S)
        else:
            text = old_pattern.sub(lambda _m: block, text, count=1)
    text = pattern.sub(lambda _m: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    BENCHMARKS.write_text(text)
    return BENCHMARKS
