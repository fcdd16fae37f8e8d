"""The C library export: generated C reproduces the Python references (featurizer within 1e-3,
int8 model bit-exact, detections equal), builds warning-free, fits a Cortex-M4 budget and runs as
Thumb code under qemu. Compiler-dependent tests skip with the missing tool named."""

from __future__ import annotations

import ctypes
import math
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from firmware_export import build
from firmware_export.generate import (calibration_from_audio, generate, golden_audio, reference_detect,
                                      window_ends)
from kws.bundle import load_bundle, random_bundle, save_bundle
from kws.errors import ExportError
from kws.features import FeatureConfig

needs_gcc = pytest.mark.skipif(not build.have("gcc"), reason="host gcc not installed")
needs_arm = pytest.mark.skipif(not (build.have("arm-none-eabi-gcc") and build.have("arm-none-eabi-size")),
                               reason="arm-none-eabi-gcc not installed (apt-get install gcc-arm-none-eabi)")
needs_qemu = pytest.mark.skipif(not build.have("qemu-arm"), reason="qemu-arm not installed (apt-get install qemu-user)")

TRAINED = Path(os.environ.get("KWS_TRAINED_BUNDLE", Path(__file__).parent / "fixtures" / "trained.kws"))


def _calib(fc: FeatureConfig = FeatureConfig()) -> np.ndarray:
    return calibration_from_audio(golden_audio(), fc)


def _harness_numbers(text: str) -> dict[str, int]:
    return {k: int(v) for k, v in re.findall(r"(\w+)=(-?\d+)", text)}


@pytest.fixture(scope="module")
def lib32(tmp_path_factory) -> Path:
    """The default-size detector (hidden 32, standard nonlinearity) generated without building."""
    d = tmp_path_factory.mktemp("c32")
    bundle = random_bundle(d / "r.kws", hidden=32, seed=3)
    generate(bundle, d / "out", calib_x_raw=_calib(), verify=False)
    return d / "out"


@needs_gcc
def test_host_harness_reproduces_python(lib32):
    ok, text = build.run_harness([str(build.host_build(lib32))], lib32)
    assert ok, text
    n = _harness_numbers(text)
    assert n["frames"] == 398 and n["max_abs_diff_x1e6"] <= 1000
    assert n["int8_mismatches"] <= n["frames"] * 32 // 1000   # the float edge: ties only, rare
    assert n["state_mismatches"] == 0 and n["logit_mismatches"] == 0 and n["window_logit_mismatches"] == 0
    assert n["windows"] == 31
    assert n["detections_python"] >= 1 and n["c_1sample"] == n["c_mixed_blocks"] == n["detections_python"]


@needs_gcc
def test_harness_fails_on_a_wrong_weight(lib32, tmp_path):
    """The harness can fail: one int8 weight changed by 1 LSB breaks the bit-exact model check."""
    bad = tmp_path / "bad"
    shutil.copytree(lib32, bad, ignore=shutil.ignore_patterns("build"))
    src = (bad / "kws_weights.c").read_text()
    m = re.search(r"kws_U_q\[[^\]]*\] = \{\s*(-?\d+)", src)
    v = int(m.group(1))
    src = src[:m.start(1)] + str(v - 1 if v > -127 else v + 1) + src[m.end(1):]
    (bad / "kws_weights.c").write_text(src)
    ok, text = build.run_harness([str(build.host_build(bad))], bad)
    assert not ok
    assert re.search(r"model: .* FAIL", text) and "RESULT FAIL" in text
    assert re.search(r"features: .* PASS", text)


def _shared_lib(out: Path) -> ctypes.CDLL:
    so = out / "build" / "libkws_test.so"
    so.parent.mkdir(exist_ok=True)
    subprocess.run(["gcc", "-O2", "-std=c99", "-ffp-contract=off", "-shared", "-fPIC", "-o", str(so),
                    *build.LIB_SRC], cwd=out, check=True, capture_output=True)
    lib = ctypes.CDLL(str(so))
    lib.kws_logf.restype, lib.kws_logf.argtypes = ctypes.c_float, [ctypes.c_float]
    return lib


@needs_gcc
def test_libm_free_log_is_accurate(lib32):
    lib = _shared_lib(lib32)
    xs = np.float32(np.concatenate([np.geomspace(1e-6, 1e6, 4001), [1.0, 2.0, 0.5, 1.41421356, 1e-6 + 1e-12]]))
    got = np.array([lib.kws_logf(float(x)) for x in xs])
    err = np.abs(got - np.log(xs.astype(np.float64)))
    assert err.max() < 2e-6, (xs[err.argmax()], err.max())
    assert lib.kws_logf(1.0) == 0.0


@needs_gcc
def test_pure_tone_worst_case_is_bounded(lib32):
    """The documented worst case (kws.h): full-scale pure tones over digital silence stay within
    5e-3 of kws.features (float32 rounding in the band mirrored about fs/4), quiet tones within 1e-3."""
    from kws.features import featurize

    lib = _shared_lib(lib32)
    lib.kws_featurize_frame.argtypes = [ctypes.c_void_p] * 3
    lib.kws_init.argtypes = [ctypes.c_void_p] * 2
    st = ctypes.create_string_buffer(16384)
    assert lib.kws_init(st, None) == 0
    t = np.arange(2400) / 16000
    for f, amp, tol in ((4870.0, 1.0, 5e-3), (1000.0, 1.0, 5e-3), (300.0, 0.05, 1e-3), (6000.0, 0.05, 1e-3)):
        pcm = np.round(amp * np.sin(2 * np.pi * f * t + 0.3) * 32767).astype(np.int16)
        ref = featurize(pcm.astype(np.float32) / 32768, FeatureConfig())
        out = np.zeros(32, np.float32)
        for k in range(ref.shape[0]):
            frame = np.ascontiguousarray(pcm[160 * k:160 * k + 400])
            lib.kws_featurize_frame(st, frame.ctypes.data, out.ctypes.data)
            assert np.abs(out - ref[k]).max() <= tol, (f, amp, k, np.abs(out - ref[k]).max())


@needs_gcc
def test_pwl_low_rank_mfcc_variant(tmp_path):
    """MFCC features, low-rank W/U, piecewise-linear gates, hidden 12: all through the same checks."""
    fc = FeatureConfig(kind="mfcc", n_mfcc=20, n_mels=40)
    rng = np.random.default_rng(5)
    from kws.models import weight_shapes

    hp = {"hidden": 12, "w_rank": 6, "u_rank": 4, "nonlinearity": "pwl"}
    weights = {}
    for name, shape in weight_shapes("fastgrnn", fc.n_features, hp).items():
        scale = 1.0 / math.sqrt(shape[-1]) if len(shape) == 2 else 0.3
        weights[name] = (rng.normal(0, scale, size=shape)).astype(np.float32)
    calib = _calib(fc)
    flat = calib.reshape(-1, fc.n_features)
    path = save_bundle(tmp_path / "m.kws", "fastgrnn", hp, weights, fc, flat.mean(0), flat.std(0) + 1e-3,
                       'Hey, "Nova"\\ café!', {0.03: 0.6, 0.05: 0.4})
    summary = generate(path, tmp_path / "out", calib_x_raw=calib, verify=build.have("gcc"))
    assert "dense int8 product" in summary and "nonlinearity pwl" in summary
    assert "host harness (gcc" in summary and "PASS" in summary
    cfg = (tmp_path / "out" / "kws_config.h").read_text()
    assert "#define KWS_PROJECT 1" in cfg and "#define KWS_NONLIN_LUT 0" in cfg
    assert '#define KWS_KEYWORD_ID hey_nova_caf' in cfg and '#define KWS_KEYWORD "Hey, ?Nova?? caf?!"' in cfg


@needs_gcc
@pytest.mark.parametrize("fc, flag", [(FeatureConfig(mean_norm_seconds=0.5), "#define KWS_MEAN_NORM 1"),
                                      (FeatureConfig(level_weight=0.25), "#define KWS_PROJECT 1"),
                                      (FeatureConfig(agc_seconds=1.0, log_floor=3e-4), "#define KWS_AGC 1")])
def test_normalized_features_variants(tmp_path, fc, flag):
    """FeatureConfig.mean_norm_seconds (the C featurizer keeps the running mean frame by frame),
    level_weight (log-mels through the projection) and agc_seconds (the gain control's state frame
    by frame, in float32): the harness's features, int8 model and detections (1-sample and mixed
    blocks) match Python."""
    calib = _calib(fc)
    flat = calib.reshape(-1, fc.n_features)
    from kws.models import weight_shapes

    rng = np.random.default_rng(4)
    weights = {name: rng.normal(0, 1.0 / math.sqrt(shape[-1]) if len(shape) == 2 else 0.3, size=shape)
               .astype(np.float32) for name, shape in weight_shapes("fastgrnn", fc.n_features, {"hidden": 16}).items()}
    bundle = save_bundle(tmp_path / "m.kws", "fastgrnn", {"hidden": 16}, weights, fc, flat.mean(0),
                         flat.std(0) + 1e-3, "nova", {0.03: 0.5, 0.05: 0.4})
    generate(bundle, tmp_path / "out", calib_x_raw=calib, verify=False)
    assert flag in (tmp_path / "out" / "kws_config.h").read_text()
    ok, text = build.run_harness([str(build.host_build(tmp_path / "out"))], tmp_path / "out")
    assert ok, text
    n = _harness_numbers(text)
    assert n["max_abs_diff_x1e6"] <= 1000 and n["state_mismatches"] == 0 and n["window_logit_mismatches"] == 0
    assert n["c_1sample"] == n["c_mixed_blocks"] == n["detections_python"]


@needs_arm
@needs_qemu
def test_thumb_build_runs_golden_vectors_under_qemu(lib32):
    ok, text = build.run_harness(["qemu-arm", "-cpu", "max", str(build.qemu_build(lib32))], lib32)
    assert ok, text
    n = _harness_numbers(text)
    assert n["window_logit_mismatches"] == 0 and n["c_mixed_blocks"] == n["detections_python"] >= 1


@needs_arm
def test_cortex_m4_fits_32k_flash_8k_ram(lib32):
    s = build.arm_size(lib32)
    assert 0 < s.text and s.rodata > 1024 * 4  # tables + 2 KB of int8 weights are really in flash
    assert s.flash < 32 * 1024, s
    assert s.ram < 8 * 1024, s
    assert s.state > 3136  # at least the int8 window ring (98 x 32)
    assert build.example_build(lib32).exists()


@needs_gcc
def test_example_main_loop_compiles_and_runs_on_host(lib32, tmp_path):
    """The example links against the library on the host (stubs: silent mic) and exits cleanly."""
    stub = tmp_path / "stub.c"
    stub.write_text("static int n = 0;\nint keep_running(void) { return n++ < 300; }\n")
    exe = tmp_path / "example"
    subprocess.run(["gcc", *build.HOST_FLAGS, "-o", str(exe), "examples/main.c", str(stub), *build.LIB_SRC],
                   cwd=lib32, check=True, capture_output=True, text=True)
    assert subprocess.run([str(exe)], timeout=30).returncode == 0


def test_lstm_bundle_is_refused_with_a_clear_error(tmp_path):
    p = random_bundle(tmp_path / "l.kws", kind="lstm", hidden=4)
    with pytest.raises(ExportError, match="FastGRNN bundles only.*onnx"):
        generate(p, tmp_path / "out", calib_x_raw=_calib(), verify=False)


def test_uncalibrated_export_names_the_fix(tmp_path):
    p = random_bundle(tmp_path / "r.kws", hidden=4)
    with pytest.raises(ExportError, match="--data"):
        generate(p, tmp_path / "out", verify=False)


def test_reference_detector_follows_the_stream_rule():
    """With smoothing 1 the integer detector is kws.stream's rule on the int8 scores exactly."""
    from kws.stream import rising_edges

    rng = np.random.default_rng(0)
    logits = np.cumsum(rng.integers(-400, 400, size=400)).astype(np.int64)
    scale = 2e-3
    tau = 0.5
    thr = int(math.ceil(math.log(tau / (1 - tau)) / scale))
    fires, _ = reference_detect(logits, 1, thr, 15)
    scores = 1.0 / (1.0 + np.exp(-logits * scale))
    times = 1.0 + 0.1 * np.arange(len(logits))  # window ends every hop (exact multiples of 0.1 s here)
    expected = rising_edges(times, scores, tau, refractory_seconds=1.5 - 1e-9)
    assert len(fires) >= 3
    assert [f - 1 for f in fires] == expected


def test_window_schedule_matches_stream():
    assert list(window_ends(97, 98, 10)) == []
    assert list(window_ends(128, 98, 10)) == [98, 108, 118, 128]


TRAINED_BUNDLES = [p for p in (TRAINED, Path(__file__).parent / "fixtures" / "c_export_upchirp.kws") if p.exists()]


@needs_gcc
@pytest.mark.parametrize("path", TRAINED_BUNDLES or [pytest.param(TRAINED, marks=pytest.mark.skip(
    reason=f"no trained bundle fixture ({TRAINED} or tests/fixtures/c_export_upchirp.kws)"))],
    ids=lambda p: Path(p).stem)
def test_trained_bundle_export(tmp_path, path):
    """Trained weights (fixture): the whole chain, and the bundle's own 3%-FPR threshold in the header."""
    b = load_bundle(path)
    summary = generate(b, tmp_path / "out", calib_x_raw=_calib(b.feature_config), verify=False)
    ok, text = build.run_harness([str(build.host_build(tmp_path / "out"))], tmp_path / "out")
    assert ok, text
    n = _harness_numbers(text)
    assert n["window_logit_mismatches"] == 0 and n["c_mixed_blocks"] == n["detections_python"] >= 1
    from kws.quantize import quantize_bundle

    thr = quantize_bundle(b, calib_x=_calib(b.feature_config)).threshold_q(b.threshold(0.03))
    assert f"#define KWS_DEFAULT_THRESHOLD INT64_C({thr})" in (tmp_path / "out" / "kws_config.h").read_text()
    assert f"threshold_q {thr}" in summary


@needs_gcc
def test_real_speech_golden_vectors(tmp_path):
    """Golden audio from real Speech Commands clips (optional corpus): the C featurizer stays within
    tolerance on speech and the int8 detector agrees end to end."""
    from conftest import shared_data
    from kws.audio import load_audio

    root = shared_data("speech_commands_v0.02_test")
    clips = [p for w in ("marvin", "on", "off", "dog") for p in sorted((root / w).glob("*.*"))[:3]]
    clips.append(root / "_background_noise_" / "running_tap.flac")
    x = np.concatenate([load_audio(p)[:16000 * 2] for p in clips])
    pcm = np.clip(np.round(x * 32768), -32768, 32767).astype(np.int16)
    fc = FeatureConfig()
    calib = calibration_from_audio(pcm, fc, step=7)
    flat = calib.reshape(-1, fc.n_features)
    b = load_bundle(random_bundle(tmp_path / "r.kws", hidden=16, seed=9))
    path = save_bundle(tmp_path / "s.kws", "fastgrnn", b.hparams, b.weights, fc, flat.mean(0), flat.std(0),
                       "marvin", b.thresholds)
    generate(path, tmp_path / "out", calib_x_raw=calib, golden_pcm=pcm, verify=False)
    ok, text = build.run_harness([str(build.host_build(tmp_path / "out"))], tmp_path / "out")
    assert ok, text
    n = _harness_numbers(text)
    assert n["frames"] > 1000 and n["max_abs_diff_x1e6"] <= 1000
    assert n["int8_mismatches"] <= n["frames"] * 32 // 1000
    assert n["window_logit_mismatches"] == 0 and n["c_mixed_blocks"] == n["detections_python"] >= 1


def test_export_bundle_c_calibrates_from_a_dataset_folder(tmp_path):
    """The `kws export --format c` route (kws.export.export_bundle) with a dataset folder for the
    int8 scales: same library as passing the windows directly."""
    import json

    from kws.data.manifest import ClipRecord, write_manifest
    from kws.export import export_bundle

    fc = FeatureConfig()
    calib = _calib(fc).astype(np.float32)
    d = tmp_path / "data"
    (d / "features").mkdir(parents=True)
    (d / "dataset.json").write_text(json.dumps({"format": "kws-dataset", "keyword": "random",
                                                "features": fc.to_dict()}))
    write_manifest(d / "manifest.jsonl", [ClipRecord(f"c{i}", f"clips/c{i}.wav", 0, "negative", "x", "test", "s",
                                                     "train") for i in range(len(calib))])
    np.save(d / "features" / "train.npy", calib)
    bundle = random_bundle(tmp_path / "r.kws", hidden=8, seed=2)
    summary = export_bundle(bundle, fmt="c", out=tmp_path / "a", data_dir=d)
    assert "calibrated on the training split" in summary
    generate(bundle, tmp_path / "b", calib_x_raw=calib, verify=False)
    for name in ("kws_weights.c", "kws_tables.c", "kws_config.h"):
        assert (tmp_path / "a" / name).read_text() == (tmp_path / "b" / name).read_text()
