"""Download, verify and unpack Google Speech Commands (same as `kws data speech-commands`).

    python -m data_recipes.speech_commands --dest data/speech_commands [--version 0.02] [--archive FILE]

Resumable: an interrupted download continues where it stopped; an unpack is atomic.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from kws.data.speech_commands import prepare
    from kws.errors import KwsError

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dest", required=True, help="folder to unpack into")
    p.add_argument("--version", default="0.02", choices=["0.01", "0.02"])
    p.add_argument("--archive", default=None, help="an already-downloaded .tar.gz (no network needed)")
    args = p.parse_args(argv)
    try:
        root = prepare(Path(args.dest), version=args.version, archive=args.archive)
    except KwsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"Speech Commands v{args.version} ready at {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
