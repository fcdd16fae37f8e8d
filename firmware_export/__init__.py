"""The C library export: `generate(bundle, out_dir) -> summary` writes a self-contained C99 keyword
spotter (featurizer, int8 FastGRNN, detector) with golden vectors, a host/qemu harness and a
Cortex-M example (see firmware_export/generate.py)."""

from firmware_export.generate import generate  # noqa: F401  (kws.export calls firmware_export.generate)

__all__ = ["generate"]
