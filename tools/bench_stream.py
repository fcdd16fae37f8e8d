"""Streaming benchmark: false accepts per hour, false rejects, DET curve and cost of `kws detect`.

Builds a long stream (default 1 hour) from REAL keyword-free speech and noise (Speech Commands v0.02
test clips of every other word, Mycroft Precise community speech, the `_background_noise_`
recordings as a noise bed and as segments) with pauses of random length, and inserts keyword
utterances at random spacing longer than the refractory period: held-out synthesized voices (the
dataset's TEST-split speakers) and the real test clips of the keyword where Speech Commands has them.

Metrics exactly as DESIGN.md section 6: a keyword inserted at [s, e] is detected if a detection
falls in [s, e + 0.5 s]; every other detection is a false accept; false accepts per hour divide by
the keyword-free hours. The smoothed score trace is computed once per backend, then thresholds are
swept with the detector's own rising-edge + refractory rule (kws.stream.rising_edges).

Cost: `kws detect` on the stream as a subprocess (CPU time / audio time = share of one core,
real-time factor, peak RSS), RSS sampled every 5 minutes of audio to show memory stays flat, and
the per-chunk cost of the live path (0.1 s chunks, as `kws listen` feeds the detector).

    nice -n 10 .venv/bin/python tools/bench_stream.py --bundle demo/marvin.kws [--hours 1]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from kws.stream import ACCEPT_AFTER_END, Detector, match_detections, rising_edges  # noqa: E402

SR = 16000
DEFAULT_DATA = Path(os.environ.get("KWS_SHARED_DATA", REPO.parent / "shared" / "data"))
PLOT = REPO / "docs" / "stream_det.png"


# ------------------------------------------------------------------------------------ stream
def _read(path: Path) -> np.ndarray:
    import soundfile as sf

    x, sr = sf.read(str(path), dtype="float32", always_2d=True)
    x = x.mean(axis=1)
    if sr != SR:
        from kws.audio import resample

        x = resample(x, sr, SR)
    return x


def _trim(x: np.ndarray, rel: float = 0.08, margin: float = 0.03) -> np.ndarray:
    """The voiced part of a clip (Speech Commands clips carry up to ~0.7 s of room noise), so the
    inserted keyword's [s, e] is the utterance, not the padding."""
    env = np.convolve(np.abs(x), np.ones(160) / 160, mode="same")
    idx = np.flatnonzero(env > rel * env.max())
    if idx.size == 0:
        return x
    m = int(margin * SR)
    return x[max(0, idx[0] - m):idx[-1] + m]


def test_speakers(bundle) -> list[str]:
    """The TTS speaker families of the bundle's dataset TEST split (held out from training)."""
    from kws.data import tts

    ds = Path(bundle.provenance.get("dataset", "")) if bundle.provenance.get("dataset") else None
    if ds is not None and (ds / "manifest.jsonl").is_file():
        from kws.data.manifest import read_manifest

        spk = sorted({r.speaker for r in read_manifest(ds / "manifest.jsonl")
                      if r.split == "test" and r.source.startswith("tts:")})
        if spk:
            return spk
    from kws.data.builder import assign_speaker_splits

    seed = int((bundle.provenance.get("dataset_info") or {}).get("seed", 0))
    by_engine: dict[str, list[str]] = {}
    for v in tts.base_voices():
        by_engine.setdefault(v.engine, []).append(v.speaker)
    out = []
    for engine, spk in sorted(by_engine.items()):
        out += [s for s, split in assign_speaker_splits(spk, seed, group=engine).items() if split == "test"]
    return sorted(set(out))


def build_stream(bundle, keyword: str, hours: float, per_hour: int, seed: int, data: Path, work: Path,
                 keyword_clips: Path | None = None, background_half: str | None = None):
    """Returns (audio, keyword spans [(s, e)], description dict). `keyword_clips`: a folder of REAL
    recordings of the keyword, inserted instead of synthesized voices (a seeded draw when there are
    more than the stream needs). `background_half`: only Speech Commands speakers of that half
    (tools/real_data.speaker_half), e.g. "B" when a model trained on half A's speech."""
    from kws.data import tts

    rng = np.random.default_rng(seed)
    sc = data / "speech_commands_v0.02_test"
    my = data / "mycroft_precise_community"
    if not sc.is_dir():
        sys.exit(f"bench_stream: needs real speech at {sc} (set KWS_SHARED_DATA or --data)")
    speech_files = [p for p in sorted(sc.glob("*/*.flac")) + sorted(sc.glob("*/*.wav"))
                    if not p.parent.name.startswith("_") and p.parent.name.lower() != keyword.lower()]
    if background_half:
        from tools.real_data import speaker_half, speaker_of

        def in_half(paths: list[Path]) -> list[Path]:
            return [p for p in paths if speaker_half(speaker_of(p)) == background_half]

        speech_files = in_half(speech_files)
    if my.is_dir():
        speech_files += sorted(p for p in my.rglob("*") if p.suffix in (".wav", ".flac")
                               and keyword.lower() not in str(p.relative_to(my)).lower() and "licenses" not in p.parts)
    noise_files = sorted((sc / "_background_noise_").glob("*.*"))
    noise_files = [p for p in noise_files if p.suffix in (".wav", ".flac")]
    real_kw = sorted((sc / keyword.lower()).glob("*.*")) if (sc / keyword.lower()).is_dir() else []
    n_kw = max(1, int(round(per_hour * hours)))
    real_source = "real:speech_commands"
    if keyword_clips is not None:
        real_kw = sorted(p for p in Path(keyword_clips).rglob("*") if p.suffix.lower() in (".wav", ".flac"))
        if not real_kw:
            sys.exit(f"bench_stream: no .wav/.flac files in {keyword_clips}")
        if len(real_kw) > n_kw:
            real_kw = [real_kw[i] for i in sorted(rng.choice(len(real_kw), n_kw, replace=False))]
        real_source = "real:" + "/".join(Path(keyword_clips).resolve().parts[-3:])
    elif background_half and real_kw:  # the keyword's real clips from the same half as the background
        real_kw = in_half(real_kw)
    speakers = test_speakers(bundle)
    n_tts = max(0, n_kw - len(real_kw))
    voices = tts.voice_configs(n_tts, seed, speakers=speakers)
    res = tts.synthesize_many([(keyword, v) for v in voices], cache_dir=work / "tts", desc="keyword voices")
    kw_audio, kw_src = [], []
    for a, v in zip(res.audio, voices):
        if a is not None:
            kw_audio.append(_trim(a))
            kw_src.append(f"tts:{v.speaker}")
    for p in real_kw:
        kw_audio.append(_trim(_read(p)))
        kw_src.append(real_source)
    order = rng.permutation(len(kw_audio))
    kw_audio = [kw_audio[i] for i in order]
    kw_src = [kw_src[i] for i in order]

    # background speech clips (shuffled, cycled if the stream needs more), levels as recorded
    from kws.util import progress

    clips = [_read(p) for p in progress(speech_files, desc="speech clips")]
    peaks = np.array([np.abs(c).max() for c in clips])
    noise = [_read(p) for p in noise_files]

    def background():
        while True:
            for i in rng.permutation(len(clips)):
                if rng.random() < 0.08 and noise:  # a noise segment now and then
                    n = noise[int(rng.integers(len(noise)))]
                    ln = int(rng.uniform(2, 8) * SR)
                    st = int(rng.integers(0, max(1, len(n) - ln)))
                    yield (n[st:st + ln] * 10 ** (rng.uniform(-20, -6) / 20)).astype(np.float32)
                yield clips[i]

    # keyword level: the peak of a random background clip, so keywords are neither louder nor softer
    for i, k in enumerate(kw_audio):
        kw_audio[i] = (k * (peaks[int(rng.integers(len(peaks)))] / max(np.abs(k).max(), 1e-6))).astype(np.float32)

    from kws.stream import compose_stream

    seconds = hours * 3600
    st = compose_stream(background(), kw_audio, seconds, rng, pause=(0.2, 2.0), min_keyword_gap=4.0,
                        keyword_gain_db=(0.0, 0.0))
    audio = st.audio
    # a continuous noise bed under everything (rooms are never digitally silent)
    if noise:
        pos = 0
        while pos < len(audio):
            n = noise[int(rng.integers(len(noise)))]
            seg = n[: len(audio) - pos] * 10 ** (rng.uniform(-40, -30) / 20)
            audio[pos:pos + len(seg)] += seg
            pos += len(seg)
        np.clip(audio, -1, 1, out=audio)
    desc = {"hours": hours, "keywords": len(kw_audio), "keywords_tts": sum(s.startswith("tts:") for s in kw_src),
            "keywords_real": sum(s.startswith("real:") for s in kw_src), "tts_speakers": sorted({k for k in kw_src if k.startswith("tts:")}),
            "tts_dropped": res.dropped if isinstance(res.dropped, int) else len(res.dropped),
            "real_source": real_source, "background_half": background_half,
            "background_speech_files": len(speech_files), "noise_files": len(noise_files),
            "pool_hours": sum(len(c) for c in clips) / SR / 3600}
    return audio, st.keywords, desc


# ------------------------------------------------------------------------------------ metrics
def score_trace(det: Detector, audio: np.ndarray, block_s: float = 30.0) -> tuple[np.ndarray, np.ndarray]:
    det.reset()
    times, raw = [], []
    b = int(block_s * SR)
    for i in range(0, len(audio), b):
        hs = det.step(audio[i:i + b])
        times.append(hs.times)
        raw.append(hs.raw)
    hs = det.flush()
    times.append(hs.times)
    raw.append(hs.raw)
    return np.concatenate(times), np.concatenate(raw)


def smooth(raw: np.ndarray, n: int) -> np.ndarray:
    """The detector's moving average (mean of the last n raw scores, fewer at the start)."""
    c = np.concatenate([[0.0], np.cumsum(raw, dtype=np.float64)])
    i = np.arange(len(raw))
    lo = np.maximum(0, i - n + 1)
    return (c[i + 1] - c[lo]) / (i + 1 - lo)


def evaluate(times, smoothed, spans, total_s, refractory, thresholds):
    """FA/h and FRR for each threshold (DESIGN.md section 6)."""
    s = np.array([a for a, _ in spans])
    e = np.array([b for _, b in spans]) + ACCEPT_AFTER_END
    free_h = (total_s - float(np.sum(e - s))) / 3600.0
    fa, frr = [], []
    for t in thresholds:
        found, hit = match_detections(times[rising_edges(times, smoothed, t, refractory)], spans)
        fa.append(int((~hit).sum()) / free_h)
        frr.append(1.0 - found.mean())
    return np.array(fa), np.array(frr), free_h


def thresholds_for(smoothed: np.ndarray, extra=()) -> np.ndarray:
    """Candidate thresholds: the values of the local maxima of the trace (where counts change),
    above the trace's median (lower thresholds keep the detector "always on": one rising edge at
    the start and nothing after, a degenerate 0 FA/h point)."""
    x = smoothed
    peaks = x[1:-1][(x[1:-1] >= x[:-2]) & (x[1:-1] >= x[2:])]
    v = np.unique(peaks[peaks >= np.median(x)])
    if len(v) > 800:
        # dense at the top (few false accepts), sparse below
        idx = np.unique(np.round(len(v) - np.geomspace(1, len(v), 800)).astype(int))
        v = v[idx]
    return np.unique(np.concatenate([v, list(extra), [1.0 + 1e-9]]))


def frr_at(fa, frr, thr, target):
    ok = fa <= target + 1e-12
    if not ok.any():
        return None, None
    cand = np.flatnonzero(ok)
    i = cand[np.flatnonzero(frr[cand] == frr[cand].min())[-1]]  # ties: the highest threshold
    return float(frr[i]), float(thr[i])


# ------------------------------------------------------------------------------------ cost
def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def rss_probe(bundle: str, wav: str, backend: str = "auto", every_s: float = 300.0) -> None:
    """(subprocess) Stream the file like `kws detect`, print RSS every `every_s` seconds of audio."""
    import soundfile as sf

    det = Detector(bundle, backend=backend)
    out, n = [], 0
    with sf.SoundFile(wav) as f:
        for block in f.blocks(blocksize=int(30 * f.samplerate), dtype="float32"):
            det.step(block)
            n += len(block)
            if not out or n / f.samplerate - out[-1][0] >= every_s:
                out.append((n / f.samplerate, rss_mb()))
    hwm = [int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:")][0]
    print(json.dumps({"rss": out, "maxrss_mb": hwm / 1024,
                      "scorer": det.scorer.name}))


_DETECT_PROBE = ("import resource, sys\n"
                 "from kws.cli import main\n"
                 "rc = main(sys.argv[1:])\n"
                 "u = resource.getrusage(resource.RUSAGE_SELF)\n"
                 "hwm = [int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM:')][0]\n"
                 "sys.stderr.write('RUSAGE %f %f\\n' % (u.ru_utime + u.ru_stime, hwm / 1024))\n"
                 "sys.exit(rc)\n")


def rss_summary(rss: list) -> str:
    v = [r for _, r in rss]
    if len(v) <= 13:
        return ", ".join(f"{r:.0f}" for r in v) + " MB"
    return (f"{v[0]:.0f} MB after the first block, then {min(v[1:]):.0f}-{max(v[1:]):.0f} MB over {len(v) - 1} samples "
            f"to {rss[-1][0] / 3600:.1f} h")


def detect_cost(bundle: Path, wav: Path, audio_s: float, backend: str = "auto") -> dict:
    """`kws detect` as its own process; its CPU time and peak RSS read by itself at exit. Peak RSS
    is VmHWM, not ru_maxrss: ru_maxrss survives exec, so a child forked from this big process
    would report the bench's own memory."""
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", _DETECT_PROBE, "detect", str(bundle), str(wav), "--json",
                          "--backend", backend],
                         capture_output=True, text=True, env=dict(os.environ, KWS_NO_PROGRESS="1"))
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        sys.exit(f"kws detect failed: {res.stderr}")
    cpu, maxrss = map(float, res.stderr.strip().splitlines()[-1].split()[1:3])
    n_det = len(json.loads(res.stdout.splitlines()[-1])["detections"])
    probe = subprocess.run([sys.executable, __file__, "--rss-probe", str(bundle), str(wav), backend],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        sys.exit(f"rss probe failed: {probe.stderr[-2000:]}")
    pr = json.loads(probe.stdout)
    return {"cpu_s": cpu, "wall_s": wall, "cpu_share": cpu / audio_s, "rtf": wall / audio_s,
            "maxrss_mb": maxrss, "detections": n_det, "rss": pr["rss"], "scorer": pr["scorer"]}


def live_cost(det: Detector, audio: np.ndarray, seconds: float = 600.0) -> float:
    """CPU seconds per audio second feeding 0.1 s chunks (what `kws listen` does)."""
    det.reset()
    x = np.clip(np.round(audio[: int(seconds * SR)] * 32768), -32768, 32767).astype(np.int16)
    t0 = time.process_time()
    for i in range(0, len(x), 1600):
        det.step(x[i:i + 1600])
    return (time.process_time() - t0) / (len(x) / SR)


# ------------------------------------------------------------------------------------ main
def trace_key(bundle_path: Path, onnx_model, args) -> str:
    import hashlib

    h = hashlib.sha256(Path(bundle_path).read_bytes())
    if onnx_model is not None:
        h.update(Path(onnx_model).read_bytes())
    h.update(f"{args.hours}|{args.per_hour}|{args.seed}|{args.data}".encode())
    if args.keyword_clips or args.background_half:  # other streams (older keys unchanged)
        h.update(f"|{args.keyword_clips}|{args.background_half}".encode())
    return h.hexdigest()[:16]


def find_int8(bundle_path: Path) -> Path | None:
    for d in (bundle_path.parent / "onnx", bundle_path.parent / f"{bundle_path.stem}_onnx"):
        p = d / "model_window_int8.onnx"
        if p.is_file():
            return p
    return None


def plot_det(curves: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    for name, (fa, frr) in curves.items():
        # best FRR reachable at or below each FA/h level (the refractory makes the raw sweep jagged)
        o = np.argsort(fa, kind="stable")
        ax.step(np.maximum(fa[o], 0.01), 100 * np.minimum.accumulate(frr[o]), where="post", label=name)
    ax.add_patch(plt.Rectangle((0.1, 1.0), 0.4, 2.5, alpha=0.2, color="green", label="microWakeWord (1-3.5% @ 0.1-0.5 FA/h)"))
    ax.plot([0.5], [5.0], "r*", ms=10, label="openWakeWord target (<5% @ <0.5 FA/h)")
    ax.set_xscale("log")
    ax.set_xlim(0.01, 1000)
    ax.set_ylim(0, 100)
    ax.set_xlabel("false accepts per hour (0 plotted at 0.01)")
    ax.set_ylabel("false reject rate (%)")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", required="--rss-probe" not in sys.argv)
    ap.add_argument("--int8-onnx", default=None, help="int8 window model (default: onnx/model_window_int8.onnx beside the bundle)")
    ap.add_argument("--hours", type=float, default=1.0)
    ap.add_argument("--per-hour", type=int, default=120, help="inserted keywords per hour")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--work", default="/tmp/kws-bench-stream", help="stream WAV and TTS cache (outside the repo)")
    ap.add_argument("--no-cost", action="store_true", help="skip the kws detect / live cost runs (reuses nothing)")
    ap.add_argument("--no-report", action="store_true", help="do not write BENCHMARKS.md / the plot")
    ap.add_argument("--keyword-clips", default=None, metavar="DIR",
                    help="real recordings of the keyword to insert instead of synthesized voices")
    ap.add_argument("--background-half", choices=["A", "B"], default=None,
                    help="only Speech Commands speakers of this half (tools/real_data): B for models trained on A")
    ap.add_argument("--section", default="stream", help="BENCHMARKS.md section (the plot is docs/<section>_det.png)")
    ap.add_argument("--note", action="append", default=[], help="a line under the table (repeatable)")
    ap.add_argument("--rss-probe", nargs=3, metavar=("BUNDLE", "WAV", "BACKEND"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rss_probe:
        rss_probe(*args.rss_probe)
        return

    from kws.audio import save_wav
    from kws.bundle import load_bundle

    bundle_path = Path(args.bundle)
    bundle = load_bundle(bundle_path)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    audio, spans, desc = build_stream(bundle, bundle.keyword, args.hours, args.per_hour, args.seed, Path(args.data), work,
                                      Path(args.keyword_clips) if args.keyword_clips else None, args.background_half)
    total_s = len(audio) / SR
    print(f"stream: {total_s / 3600:.2f} h, {len(spans)} keywords ({desc['keywords_tts']} synthesized held-out voices "
          f"from {len(desc['tts_speakers'])} speakers, {desc['keywords_real']} real), built in {time.time() - t0:.0f} s",
          flush=True)

    refractory = 1.5
    results: dict[str, dict] = {}
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    backends = [("float (numpy)", {"backend": "numpy"})]
    int8 = Path(args.int8_onnx) if args.int8_onnx else find_int8(bundle_path)
    if int8 is not None and int8.is_file():
        backends.append(("int8 ONNX", {"onnx_model": int8}))
    for name, kw in backends:
        det = Detector(bundle, threshold=0.5, **kw)
        cache = work / f"trace_{trace_key(bundle_path, kw.get('onnx_model'), args)}.npz"
        if cache.is_file():  # the same bundle/model on the same stream: reuse the score trace
            z = np.load(cache)
            times, raw, score_cpu = z["times"], z["raw"], float(z["cpu"])
        else:
            t1 = time.process_time()
            times, raw = score_trace(det, audio)
            score_cpu = time.process_time() - t1
            np.savez(cache, times=times, raw=raw, cpu=score_cpu)
        for n in ((1, 2, 3, 5) if name.startswith("float") else (3,)):
            sm = smooth(raw, n)
            cal = [bundle.threshold(f) for f in (0.03, 0.05) if str(f) in bundle.thresholds]
            thr = thresholds_for(sm, cal)
            fa, frr, free_h = evaluate(times, sm, spans, total_s, refractory, thr)
            key = f"{name}, smoothing {n}"
            curves[key] = (fa, frr)
            r = {"score_cpu_share": score_cpu / total_s, "free_hours": free_h}
            for target in (0.5, 1.0):
                r[f"frr@{target}"] = frr_at(fa, frr, thr, target)
            for f in (0.03, 0.05):
                if str(f) in bundle.thresholds:
                    i = int(np.flatnonzero(np.isclose(thr, bundle.threshold(f)))[0])
                    r[f"cal{f}"] = (float(bundle.threshold(f)), float(fa[i]), float(frr[i]))
            results[key] = r
            f05, f1 = r["frr@0.5"], r["frr@1.0"]
            fmt = lambda v: "n/a" if v[0] is None else f"{100 * v[0]:.1f}% (t={v[1]:.3f})"  # noqa: E731
            print(f"{key:28s} FRR@0.5FA/h {fmt(f05):22s} FRR@1FA/h {fmt(f1):22s} "
                  + " ".join(f"[t{f}={r[f'cal{f}'][0]:.3f}: {r[f'cal{f}'][1]:.2f} FA/h, FRR {100 * r[f'cal{f}'][2]:.1f}%]"
                             for f in (0.03, 0.05) if f"cal{f}" in r), flush=True)

    cost = None
    live = None
    if not args.no_cost:
        wav = work / f"stream_{args.hours:g}h_seed{args.seed}.wav"
        save_wav(wav, audio)
        cost = [detect_cost(bundle_path, wav, total_s, "numpy")]
        auto = detect_cost(bundle_path, wav, total_s, "auto")
        if auto["scorer"] != "numpy":
            cost.append(auto)
        live = live_cost(Detector(bundle, backend="numpy"), audio)
        for c in cost:
            print(f"kws detect on {total_s / 3600:.2f} h ({c['scorer']} backend): CPU {c['cpu_s']:.1f} s = "
                  f"{100 * c['cpu_share']:.2f}% of one core, real-time factor {c['rtf']:.4f}, "
                  f"peak RSS {c['maxrss_mb']:.0f} MB; RSS every 5 min of audio: {rss_summary(c['rss'])}", flush=True)
        print(f"live path (0.1 s int16 chunks, numpy): {100 * live:.2f}% of one core", flush=True)

    if args.no_report:
        return
    title = (f"'{bundle.keyword}' {bundle.model_kind} (hidden {bundle.hparams.get('hidden')}): "
             f"{total_s / 3600:.1f} h real speech+noise, {len(spans)} keywords")
    plot_det(curves, plot_path(args), title)
    write_report(bundle, bundle_path, desc, spans, total_s, results, cost, live, args)


def quality(bundle) -> str:
    try:
        t = bundle.metrics["test"]
        own = t["own"]
        return (f"recall {100 * own['0.03']['recall']:.1f}% at 3% FPR, {100 * own['0.05']['recall']:.1f}% at 5% FPR, "
                f"AUC {t['auc']:.3f}")
    except (KeyError, TypeError):
        return "no test metrics recorded"


def plot_path(args) -> Path:
    return PLOT if args.section == "stream" else REPO / "docs" / f"{args.section}_det.png"


def write_report(bundle, bundle_path, desc, spans, total_s, results, cost, live, args) -> None:
    sys.path.insert(0, str(REPO / "tools"))
    from report import update_section

    def pct(v):
        if v[0] is None:
            return "n/a"
        if v[0] >= 1.0:
            return "100% (no threshold detects any keyword at this FA rate)"
        return f"{100 * v[0]:.1f}% (threshold {v[1]:.3f})"

    lines = [
        "## Streaming detection: false accepts per hour, false rejects, cost"
        + ("" if args.section == "stream" else f" ({args.section.replace('_', ' ')})"),
        "",
        f"Bundle `{bundle_path}`: '{bundle.keyword}', {bundle.model_kind} {bundle.hparams}, trained "
        f"{bundle.provenance.get('method', '?')} ({(bundle.provenance.get('dataset_info') or {}).get('preset', '?')} "
        f"preset); on its own test split: {quality(bundle)}.",
        f"Stream: {total_s / 3600:.2f} h built by `tools/bench_stream.py` (seed {args.seed}) from real keyword-free "
        f"speech ({desc['background_speech_files']} files: Speech Commands v0.02 test clips of every other word + "
        f"Mycroft Precise community speech) with random pauses over a noise bed and noise segments "
        f"({desc['noise_files']} `_background_noise_` files); {len(spans)} inserted keywords "
        f"({desc['keywords_tts']} synthesized by {len(desc['tts_speakers'])} held-out "
        f"test-split TTS speakers, {desc['keywords_real']} real clips from "
        f"{desc.get('real_source', 'real:speech_commands')[5:]}), at least 4 s apart. "
        + (f"Background Speech Commands speakers: half {desc['background_half']} only (speaker-disjoint from "
           "training negatives of half A). " if desc.get("background_half") else "") +
        f"Keyword-free audio: {next(iter(results.values()))['free_hours']:.2f} h"
        + (f" (the background pool holds about {desc['pool_hours']:.1f} h of speech, so clips recur)"
           if desc.get("pool_hours", 1e9) < total_s / 3600 else "") + ".",
        "A keyword at [s, e] counts as detected if a detection falls in [s, e + 0.5 s]; any other detection "
        "is a false accept. Hop 0.1 s, refractory 1.5 s, smoothing = moving average over N hops.",
        "",
        "| model, smoothing | FRR at 0.5 FA/h | FRR at 1 FA/h | at the 3%-FPR threshold | at the 5%-FPR threshold "
        "| scoring CPU (share of one core) |",
        "|---|---|---|---|---|---|",
    ]
    for key, r in results.items():
        cal = [f"{r[f'cal{f}'][1]:.2f} FA/h, FRR {100 * r[f'cal{f}'][2]:.1f}% (t={r[f'cal{f}'][0]:.3f})"
               if f"cal{f}" in r else "n/a" for f in (0.03, 0.05)]
        lines.append(f"| {key} | {pct(r['frr@0.5'])} | {pct(r['frr@1.0'])} | {cal[0]} | {cal[1]} "
                     f"| {100 * r['score_cpu_share']:.2f}% |")
    lines += [""] + [f"- {n}" for n in args.note] + ["", f"DET curve: `{plot_path(args).relative_to(REPO)}`.", "",
              "Anchors (their own data, not comparable one to one): openWakeWord targets < 5% FRR at < 0.5 FA/h; "
              "microWakeWord reports 1-3.5% FRR at 0.1-0.5 FA/h."]
    if cost:
        lines += [""]
        for c in cost:
            how = ("`kws detect BUNDLE stream.wav --json` (auto: picks the float ONNX export beside the bundle)"
                   if c is not cost[0] else "`kws detect BUNDLE stream.wav --json --backend numpy`")
            lines.append(f"- Cost of {how} on the {total_s / 3600:.2f} h stream ({c['scorer']} scorer, whole process "
                         f"incl. start-up): CPU {c['cpu_s']:.1f} s = **{100 * c['cpu_share']:.2f}% of one core**, "
                         f"real-time factor {c['rtf']:.4f}, peak RSS (VmHWM) {c['maxrss_mb']:.0f} MB; RSS every 5 min "
                         f"of audio (streamed in 30 s blocks): {rss_summary(c['rss'])}.")
        lines += [f"- Live path (0.1 s int16 chunks as `kws listen` feeds them, numpy): "
                  f"**{100 * live:.2f}% of one core**.",
                  "- Goal: FastGRNN detection under 2% of one core, memory flat."]
    update_section(args.section, "\n".join(lines))
    print(f"wrote BENCHMARKS.md section '{args.section}' and {plot_path(args)}")


if __name__ == "__main__":
    main()
