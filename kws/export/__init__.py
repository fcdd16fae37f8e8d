"""Export a trained bundle: ONNX (float / int8, onnxruntime without torch) or a C library."""

from __future__ import annotations

from pathlib import Path

from kws.errors import ExportError

FORMATS = ("onnx", "c")


def export_bundle(bundle_path: str | Path, fmt: str = "onnx", out: str | Path = "export", int8: bool = False,
                  data_dir: str | Path | None = None) -> str:
    """Export `bundle_path` to `out` in format `fmt`; returns the summary text.

    data_dir: the dataset folder whose training features calibrate int8 activation scales (default:
    the dataset recorded in the bundle's provenance)."""
    bundle_path, out = Path(bundle_path), Path(out)
    if fmt == "onnx":
        from kws.export.onnx_export import export_onnx

        return export_onnx(bundle_path, out, int8=int8, data_dir=str(data_dir) if data_dir else None)
    if fmt == "c":
        try:
            from firmware_export import generate
        except ImportError:
            raise ExportError("the C library generator (firmware_export) is not installed with this copy of kws; "
                              "export --format onnx instead") from None
        return generate(bundle_path, out, data_dir=data_dir)
    raise ExportError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
