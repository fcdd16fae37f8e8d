"""Other wake-word systems, wrapped so tools/peer_benchmark.py can score them on the same audio as ours.

Each peer is optional (the `peers` extra); importing a module here never fails, but calling it without
the package raises a KwsError naming the install step (`make peers`).
"""

from __future__ import annotations

PEERS_INSTALL_HINT = "install the optional peer systems with `make peers` (or `pip install -e '.[peers]'`)"
