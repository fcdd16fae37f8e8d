"""Live detection on a microphone (`kws listen`) and the input-device list (`kws devices`).

The PortAudio callback only copies each block into a queue; the main thread runs the detector, so a
slow step never blocks the audio driver. Input overflows (blocks the driver dropped) are counted and
reported, never silently lost. Device problems become a `DeviceError` with the device list and the
usual fixes, not a PortAudio traceback. sounddevice is imported lazily (it needs libportaudio).
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import queue
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kws.errors import DeviceError

SAMPLE_RATE = 16000
BLOCK_SECONDS = 0.1
PLAIN_METER_SECONDS = 5.0  # period of the meter line when stderr is not a terminal
NO_AUDIO_SECONDS = 5.0  # warn when the device delivered nothing for this long

_HINT = ("Check that a microphone is connected and allowed (on Linux: your user is in the 'audio' group, "
         "PulseAudio/PipeWire is running for this session: `pactl info`; in a container or CI, start a "
         "virtual one with `eval \"$(scripts/pulse_null_sink.sh start)\"`); pick another device with "
         "--device (see `kws devices`).")


def _sd():
    """Import sounddevice, turning a missing PortAudio library into a DeviceError."""
    try:
        import sounddevice
    except OSError as e:  # sounddevice raises OSError when libportaudio cannot be loaded
        raise DeviceError(f"the PortAudio library is not available ({e}); install it: "
                          "`apt-get install libportaudio2` (Debian/Ubuntu), `brew install portaudio` (macOS)") from None
    except ImportError as e:
        raise DeviceError(f"the sounddevice package is missing ({e}); `pip install sounddevice`") from None
    return sounddevice


def input_devices() -> list[dict[str, Any]]:
    """Input-capable devices: index, name, channels, default sample rate, host API, default flag."""
    sd = _sd()
    try:
        devs = sd.query_devices()
        apis = sd.query_hostapis()
    except Exception as e:
        raise DeviceError(f"cannot list audio devices ({e}). {_HINT}") from None
    try:
        default_in = sd.default.device[0]
    except Exception:
        default_in = -1
    out = []
    for i, d in enumerate(devs):
        if d.get("max_input_channels", 0) > 0:
            api = apis[d["hostapi"]]["name"] if 0 <= d.get("hostapi", -1) < len(apis) else "?"
            out.append({"index": i, "name": d["name"], "channels": int(d["max_input_channels"]),
                        "default_samplerate": float(d["default_samplerate"]), "hostapi": api,
                        "default": i == default_in})
    return out


def _device_lines(devs: list[dict[str, Any]]) -> str:
    if not devs:
        return "  (no input devices found)"
    return "\n".join(f"{'*' if d['default'] else ' '} {d['index']:3d}  {d['name']}  ({d['hostapi']}, "
                     f"{d['channels']} ch, {d['default_samplerate']:.0f} Hz)" for d in devs)


def devices_report() -> str:
    """`kws devices`: the input devices, the default marked with *."""
    devs = input_devices()
    text = "Audio input devices (* = default):\n" + _device_lines(devs)
    if not devs:
        text += "\n" + _HINT
    return text


def _resolve_device(device: str | int | None, devs: list[dict[str, Any]]) -> int | None:
    """--device: an index, or a (case-insensitive) part of a device name; None = the default."""
    if device is None or device == "":
        if not devs:
            raise DeviceError(f"no audio input device found.\n{_device_lines(devs)}\n{_HINT}")
        return None
    if isinstance(device, int) or str(device).strip().isdigit():
        idx = int(device)
        if not any(d["index"] == idx for d in devs):
            raise DeviceError(f"input device {idx} does not exist or cannot record. Input devices:\n"
                              f"{_device_lines(devs)}\n{_HINT}")
        return idx
    matches = [d for d in devs if str(device).lower() in d["name"].lower()]
    if len(matches) != 1:
        what = "matches no" if not matches else "matches several"
        raise DeviceError(f"--device {device!r} {what} input device. Input devices:\n{_device_lines(devs)}\n"
                          "Pass the index or a unique part of the name.")
    return int(matches[0]["index"])


def _open_stream(sd, device: int | None, callback, devs) -> tuple[Any, int]:
    """An int16 mono InputStream at 16 kHz, or at the device's own rate (resampled by the detector)
    when it refuses 16 kHz."""
    rates = [SAMPLE_RATE]
    try:
        info = sd.query_devices(device, "input")
        native = int(round(info["default_samplerate"]))
        if native != SAMPLE_RATE:
            rates.append(native)
    except Exception:
        pass
    last: Exception | None = None
    for rate in rates:
        try:
            stream = sd.InputStream(samplerate=rate, channels=1, dtype="int16", device=device,
                                    blocksize=int(rate * BLOCK_SECONDS), callback=callback)
            return stream, rate
        except Exception as e:  # sd.PortAudioError, ValueError for bad parameters
            last = e
    raise DeviceError(f"cannot open the audio input ({last}). Input devices:\n{_device_lines(devs)}\n{_HINT}")


@dataclass
class MicInput:
    """An opened (not yet started) int16 mono input stream, its sample rate and the device's name."""

    stream: Any
    rate: int
    name: str
    devices: list[dict[str, Any]]

    def start(self) -> None:
        try:
            self.stream.start()
        except Exception as e:
            raise DeviceError(f"cannot start recording from {self.name!r} ({e}). Input devices:\n"
                              f"{_device_lines(self.devices)}\n{_HINT}") from None

    def close(self) -> None:
        try:
            self.stream.stop()
            self.stream.close()
        except Exception:
            pass


def open_input(device: str | int | None, callback) -> MicInput:
    """The microphone input `kws listen` and `kws record` share: --device resolved (index or part of
    a name, None = default), an int16 mono stream of BLOCK_SECONDS blocks delivered to
    `callback(indata, frames, time_info, status)` at 16 kHz or the device's own rate; DeviceError
    with the device list and the usual fixes when there is no usable input."""
    sd = _sd()
    devs = input_devices()
    dev = _resolve_device(device, devs)
    stream, rate = _open_stream(sd, dev, callback, devs)
    name = next((d["name"] for d in devs if d["index"] == dev or (dev is None and d["default"])), "default")
    return MicInput(stream, rate, name, devs)


def _meter(level_db: float, score: float, threshold: float, width: int = 20) -> str:
    lv = int(round(width * min(max((level_db + 60.0) / 60.0, 0.0), 1.0)))
    sc = int(round(width * min(max(score, 0.0), 1.0)))
    th = int(round(width * threshold))
    bar = "".join("#" if i < sc else ("|" if i == th else " ") for i in range(width))
    return f"level {level_db:6.1f} dBFS [{'#' * lv}{' ' * (width - lv)}]  score {score:.3f} [{bar}]"


def _run_hook(command: str, keyword: str, score: float, t: float, children: list) -> None:
    env = dict(os.environ, KWS_KEYWORD=keyword, KWS_SCORE=f"{score:.4f}", KWS_TIME=f"{t:.3f}")
    try:
        # non-blocking, own session: a slow hook never stalls detection and Ctrl-C does not hit it
        children.append(subprocess.Popen(command, shell=True, env=env, stdin=subprocess.DEVNULL,
                                         start_new_session=True))
    except OSError as e:
        print(f"kws: warning: --on-detect command failed to start: {e}", file=sys.stderr, flush=True)


def listen(bundle_path: str | os.PathLike, device: str | int | None = None, on_detect: str | None = None,
           threshold: float | None = None, fpr: float | None = 0.03, duration: float | None = None,
           sensitivity: float | None = None, onnx_model: str | os.PathLike | None = None,
           backend: str = "auto") -> int:
    """`kws listen`: detect the keyword on a live input until Ctrl-C (or `duration` seconds)."""
    from kws.stream import Detector

    detector = Detector(Path(bundle_path), threshold=threshold, fpr=fpr, sensitivity=sensitivity,
                        onnx_model=onnx_model, backend=backend)
    q: queue.Queue = queue.Queue()
    stats = {"overflows": 0, "callbacks": 0}

    def callback(indata, frames, time_info, status) -> None:  # runs on PortAudio's thread: copy, count, return
        stats["callbacks"] += 1
        if status and getattr(status, "input_overflow", False):
            stats["overflows"] += 1
        q.put(indata.copy())

    mic = open_input(device, callback)
    rate, dev_name = mic.rate, mic.name
    if rate != detector.sample_rate:
        scorer = detector.scorer
        detector = Detector(detector.bundle, threshold=detector.threshold, input_rate=rate)
        detector.scorer = scorer

    stop = {"flag": False}

    def on_term(signum, frame) -> None:
        stop["flag"] = True

    old_term = signal.signal(signal.SIGTERM, on_term) if _main_thread() else None
    tty = sys.stderr.isatty()
    children: list[subprocess.Popen] = []
    n_det = 0
    samples = 0
    peak = 0.0
    last_meter = 0.0
    reported_overflows = 0
    t_start = time.monotonic()
    last_audio = t_start
    warned_silent = False
    try:
        mic.start()
        print(f"kws: listening for '{detector.keyword}' on {dev_name!r} at {rate} Hz "
              f"(threshold {detector.threshold:.3f}); Ctrl-C to stop", file=sys.stderr, flush=True)
        while not stop["flag"]:
            now = time.monotonic()
            if duration is not None and (samples / rate >= duration or now - t_start > duration + 5.0):
                break
            try:
                block = q.get(timeout=0.2)
            except queue.Empty:
                if not mic.stream.active:
                    raise DeviceError(f"the input stream from {dev_name!r} stopped unexpectedly. {_HINT}")
                if now - last_audio > NO_AUDIO_SECONDS and not warned_silent:
                    print(f"kws: warning: no audio from {dev_name!r} for {NO_AUDIO_SECONDS:.0f} s", file=sys.stderr,
                          flush=True)
                    warned_silent = True
                continue
            last_audio = now
            samples += block.shape[0]
            hs = detector.step(block)
            level = float(np.sqrt(np.mean(np.square(block.astype(np.float64) / 32768.0))) + 1e-12)
            level_db = max(20 * math.log10(level), -120.0)
            peak = max(peak, float(hs.smoothed.max()) if hs.smoothed.size else 0.0)
            for d in hs.detections:
                n_det += 1
                if tty:
                    sys.stderr.write("\r\033[K")
                wall = _dt.datetime.now().astimezone().isoformat(timespec="milliseconds")
                print(f"{wall}  detected '{d.keyword}'  score {d.score:.3f}  stream {d.time_s:.2f} s", flush=True)
                if on_detect:
                    _run_hook(on_detect, d.keyword, d.score, d.time_s, children)
            if stats["overflows"] > reported_overflows:
                print(f"\nkws: warning: input overflow: {stats['overflows'] - reported_overflows} block(s) dropped by "
                      "the audio driver (CPU too busy?)", file=sys.stderr, flush=True)
                reported_overflows = stats["overflows"]
            t_audio = samples / rate
            if tty:
                sys.stderr.write("\r" + _meter(level_db, detector.last_score, detector.threshold) + "\033[K")
                sys.stderr.flush()
            elif t_audio - last_meter >= PLAIN_METER_SECONDS:
                print(f"kws: [{t_audio:7.1f} s] {_meter(level_db, detector.last_score, detector.threshold)} "
                      f"peak {peak:.3f}", file=sys.stderr, flush=True)
                last_meter = t_audio
                peak = 0.0
            children[:] = [c for c in children if c.poll() is None]  # reap finished hooks
    except KeyboardInterrupt:
        pass
    finally:
        mic.close()
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
    # a block or two captured while stopping is normal; more means the detector fell behind
    backlog = q.qsize()
    if tty:
        sys.stderr.write("\n")
    print(f"kws: stopped after {samples / rate:.1f} s of audio ({time.monotonic() - t_start:.1f} s wall): "
          f"{n_det} detection{'s' if n_det != 1 else ''}, {stats['overflows']} input overflow(s)"
          + (f", {backlog} queued block(s) not processed (the detector fell behind)" if backlog > 2 else ""),
          file=sys.stderr, flush=True)
    return 0


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
