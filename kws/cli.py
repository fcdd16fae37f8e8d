"""The `kws` command: one subcommand per task, each a few lines over a library function.

Library modules are imported inside each handler so `kws --help` and `kws listen` start fast
and a box without torch can still run the detector.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kws.errors import KwsError


# ---------------------------------------------------------------- data and voices
def cmd_voices(args: argparse.Namespace) -> int:
    from kws.data import tts

    print(tts.voices_report(engines=args.engine))
    return 0


def cmd_data_build(args: argparse.Namespace) -> int:
    from kws.data.builder import BuildOptions, build_dataset

    opts = BuildOptions(
        keyword=args.keyword,
        out=Path(args.out),
        preset=args.preset,
        positives=[Path(p) for p in args.positives],
        negatives=[Path(p) for p in args.negatives],
        noise=[Path(p) for p in args.noise],
        close_negatives=args.close_negatives,
        replace_close_negatives=args.replace_close_negatives,
        sizes=args.sizes,
        seed=args.seed,
        workers=args.workers,
        close_negatives_in_train=args.close_negatives_in_train,
        engines=args.engine,
        **_recipe(args),
    )
    summary = build_dataset(opts)
    print(summary.table())
    print(summary.timing())
    return 0


def cmd_data_speech_commands(args: argparse.Namespace) -> int:
    from kws.data.speech_commands import prepare

    root = prepare(Path(args.dest), version=args.version, archive=args.archive)
    print(f"Speech Commands v{args.version} ready at {root}")
    return 0


def cmd_record(args: argparse.Namespace) -> int:
    import shlex

    from kws.record import keyword_stem, record_keyword

    out = Path(args.out) if args.out else Path("recordings") / keyword_stem(args.keyword)
    result = record_keyword(args.keyword, out, n=args.n, device=args.device, seconds=args.seconds,
                            wait=not args.yes, countdown=args.countdown, max_retakes=args.retakes)
    if result.takes:
        print(f"Train with them: kws train --keyword {shlex.quote(args.keyword)} --positives {shlex.quote(str(out))}")
    return 0


def _recipe_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--augment", default=None, choices=["realistic", "quiet", "quiet-tail", "wide", "standard"],
                   help="augmentation recipe: realistic (default: speaker, room, microphone, codec and level "
                        "variation plus dither on every clip, so synthesized and recorded audio look alike), "
                        "quiet (realistic down to speech at -60 dBFS instead of -42: for quiet or far-field use; "
                        "on real speech athena +14 points, amelia -12, left -8, BENCHMARKS.md text_only_quiet), "
                        "quiet-tail (a quarter of the clips at -60 to -42 dBFS, the rest as realistic), wide "
                        "(-60 to -6 dBFS, loud clips saturating as an overloaded microphone does) or standard "
                        "(speed, pitch, reverb, noise, gain)")
    p.add_argument("--carrier-share", type=float, default=None,
                   help="share of synthesized clips said inside a carrier phrase ('hey WORD', 'WORD, what time is "
                        "it') and cut around the word, as a stream shows it (default 0.3; 0 = the word alone)")
    p.add_argument("--clean-share", type=float, default=None,
                   help="share of clips of every kind left without microphone, noise, codec or dither, so a "
                        "missing noise floor (speech synthesis, zero-padded files) tells the model nothing "
                        "(default 0.15)")
    p.add_argument("--word-task", type=int, default=None, metavar="N",
                   help="N clips of other words for an auxiliary task that names the word (up to half real, from "
                        "the Speech Commands trees in --negatives; the rest the same words synthesized), also the "
                        "pool --mine draws hard negatives from. Default: as many as the training split's other "
                        "clips when --negatives holds a Speech Commands tree (3000 for the paper preset), else 0; "
                        "on real speech it and the mining lifted recall at 3%% FPR by 7-23 points on four words and "
                        "left amelia level (BENCHMARKS.md text_only_word, text_only_mine_select); 0 = off")
    p.add_argument("--espeak-share", type=float, default=None, metavar="SHARE",
                   help="share of synthesized words said by espeak-ng voices, the rest by the flite, festival and "
                        "piper voices (recorded-voice and neural synthesis). Default: voices spread evenly over "
                        "voice families, about 90%% espeak-ng. Measured on real speech with 0.5 (2 seeds): amelia "
                        "74%% and athena 86%% recall at 3%% FPR against the default's 82%% and 83%%, within seed noise "
                        "(BENCHMARKS.md text_only_voices_mix)")
    p.add_argument("--keyword-variant", action="append", default=None, metavar="TEXT",
                   help="another pronunciation of the keyword, said by synthesized voices as often as its text: a "
                        "word, or an espeak-ng phoneme string such as \"[[a#m'i:lj@]]\" (see `espeak-ng -x WORD`); "
                        "repeatable. The CMU dictionary's pronunciations that espeak-ng does not say are added "
                        "without it (see --no-dictionary-variants)")
    p.add_argument("--no-dictionary-variants", dest="dictionary_variants", action="store_false", default=None,
                   help="do not add the CMU dictionary's pronunciations of the keyword that espeak-ng does not say "
                        "(by default they are keyword variants, e.g. amelia's three-syllable uh-MEEL-yuh; most words "
                        "have none, and the dataset summary lists them under 'keyword also said as'). Measured on "
                        "real 'amelia': 2-model ensembles 92.0%% recall at 3%% FPR with it (mean of 4), 86.4%% "
                        "without, PocketSphinx 91.5%% (BENCHMARKS.md text_only_dict)")
    p.add_argument("--mean-norm", type=float, default=None, metavar="SECONDS",
                   help="experimental: subtract from every feature its running mean over about SECONDS (a "
                        "log-domain automatic gain control, like PCEN: the microphone's level and frequency response "
                        "leave the features; the streaming detector and the C library run it frame by frame). "
                        "Measured with 0.5 on real speech: athena 72%% recall at 3%% FPR against 85%% without (2 seeds), "
                        "amelia 55%% against 76%% (1 seed; BENCHMARKS.md text_only_mean_norm), so it stays off. "
                        "Default 0 = off")
    p.add_argument("--level-weight", type=float, default=None, metavar="W",
                   help="experimental: keep only this share (0-1) of each frame's overall level in the features, so "
                        "quiet and loud speakers look more alike while the spectrum's shape stays (1 = off, the "
                        "default); training then uses DROCC radius 32. Measured with 0.25 on real speech: athena's "
                        "2-model ensembles 94%% recall at 3%% FPR against 87%%, but left 45%% against 57%% "
                        "(BENCHMARKS.md text_only_level)")
    p.add_argument("--edge-share", type=float, default=None, metavar="P",
                   help="experimental: give this share (0-1) of clips of every kind a recording edge, digital "
                        "silence before or after the speech, as in a short clip padded with silence; recorded "
                        "negatives placed off-centre have such edges, keywords otherwise never do (default 0). "
                        "Measured with 0.3 from text alone (BENCHMARKS.md text_only_edges): real 'right' 77.0 and "
                        "54.8%% recall at 3%% FPR against 58.3%% (seed 0), but 'amelia' 75.3%% against 88.8%% and "
                        "'left' 57.5 and 52.2%% against 63.2 and 51.3%%")
    p.add_argument("--log-floor", type=float, default=None, metavar="F",
                   help="experimental: the featurizer's floor under the mel energies, log(mel + F) (default 1e-6, "
                        "DESIGN.md's). 3e-4, about white noise at -65 dBFS, makes digital silence and a quiet room look "
                        "alike: from text alone real 'right' 67.4 and 65.7%% recall at 3%% FPR against 49.6 and "
                        "56.1%%, but speech recorded below about -60 dBFS sinks under it (real 'athena' 82%% against "
                        "94%%; BENCHMARKS.md text_only_floor). Use it when your input is never that quiet")
    p.add_argument("--agc", type=float, default=None, metavar="SECONDS",
                   help="experimental: an input gain control in front of the featurizer's floor: once someone "
                        "speaks, the mel energies are scaled so the running speech level (a plain average at first, "
                        "then over about SECONDS of speech) sits at -30 dBFS, so the floor (see --log-floor) follows "
                        "the input level; before any speech the gain is -20 dB. The streaming detector and the C library "
                        "run it frame by frame. Measured with 1 and --log-floor 3e-4 from text alone: real 'athena' "
                        "95.4 and 97.1%% recall at 3%% FPR against 93.6 and 82.4%% (PocketSphinx 96.3%%), 'right' 70.4 and "
                        "75.2%% against 49.6 and 56.1%%, but 'left' 18.0 and 28.5%% against 61.0 and 58.8%% (DROCC stalled; "
                        "BENCHMARKS.md text_only_agc). "
                        "Default 0 = off")


def _recipe(args: argparse.Namespace) -> dict:
    """The recipe flags given (the rest keep BuildOptions' defaults)."""
    given = {"augment_recipe": args.augment, "carrier_share": args.carrier_share, "clean_share": args.clean_share,
             "word_task": args.word_task, "mean_norm_seconds": args.mean_norm, "level_weight": args.level_weight,
             "espeak_share": args.espeak_share, "edge_share": args.edge_share, "log_floor": args.log_floor, "agc_seconds": args.agc,
             "keyword_variants": args.keyword_variant, "dictionary_variants": args.dictionary_variants}
    return {k: v for k, v in given.items() if v is not None}


# ---------------------------------------------------------------- training and evaluation
def cmd_train(args: argparse.Namespace) -> int:
    import logging

    from kws.train.api import TrainOptions, train_keyword
    from kws.util import progress_enabled

    if not progress_enabled():  # no progress bar (a log, CI): one line per epoch instead
        logging.basicConfig(level=logging.INFO, format="%(message)s")

    opts = TrainOptions(
        keyword=args.keyword,
        data=Path(args.data) if args.data else None,
        method=args.method,
        model=args.model,
        out=Path(args.out) if args.out else Path(f"{args.keyword}.kws"),
        epochs=args.epochs,
        hidden=args.hidden,
        seed=args.seed,
        workers=args.workers,
        run_dir=Path(args.run_dir) if args.run_dir else None,
        preset=args.preset,
        sparsity=args.sparsity,
        positives=[Path(p) for p in args.positives],
        negatives=[Path(p) for p in args.negatives],
        build=_recipe(args),
        teacher=args.teacher,
        ensemble=args.ensemble,
        distill_ensemble=args.distill,
        train_hparams={k: v for k, v in (("mine", args.mine), ("phone_task", args.phone_task)) if v is not None},
    )
    result = train_keyword(opts)
    print(result.table())
    return 0


def cmd_ensemble(args: argparse.Namespace) -> int:
    from kws.train.api import ensemble_bundles

    result = ensemble_bundles([Path(b) for b in args.bundles], Path(args.out),
                              data=Path(args.data) if args.data else None)
    print(result.table())
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from kws.evaluate import evaluate_bundle

    report = evaluate_bundle(Path(args.bundle), Path(args.data), split=args.split,
                             int8=args.int8, plot=Path(args.plot) if args.plot else None)
    print(report.table())
    return 0


# ---------------------------------------------------------------- detection
def cmd_detect(args: argparse.Namespace) -> int:
    from kws.stream import detect_files

    return detect_files(Path(args.bundle), [Path(f) for f in args.files], threshold=args.threshold,
                        fpr=args.fpr, as_json=args.json, sensitivity=args.sensitivity,
                        onnx_model=Path(args.onnx) if args.onnx else None, backend=args.backend)


def cmd_listen(args: argparse.Namespace) -> int:
    from kws.live import listen

    return listen(Path(args.bundle), device=args.device, on_detect=args.on_detect,
                  threshold=args.threshold, fpr=args.fpr, duration=args.duration,
                  sensitivity=args.sensitivity, onnx_model=Path(args.onnx) if args.onnx else None,
                  backend=args.backend)


def cmd_devices(args: argparse.Namespace) -> int:
    from kws.live import devices_report

    print(devices_report())
    return 0


# ---------------------------------------------------------------- export and demo
def cmd_export(args: argparse.Namespace) -> int:
    from kws.export import export_bundle

    summary = export_bundle(Path(args.bundle), fmt=args.format, out=Path(args.out), int8=args.int8,
                            data_dir=Path(args.data) if args.data else None)
    print(summary)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from kws.demo import run_demo

    return run_demo(Path(args.workdir), quick=args.quick)


# ---------------------------------------------------------------- parser
def _threshold_args(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--threshold", type=float, help="score threshold in [0, 1] (overrides --fpr)")
    g.add_argument("--fpr", type=float, default=0.03, choices=[0.03, 0.05],
                   help="use the bundle's threshold calibrated for this false-positive rate (default 0.03)")


def _detector_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sensitivity", type=float, default=None,
                   help="0..1 instead of --fpr: 0.5 = the 3%%-FPR threshold, 1 = the 5%%-FPR one, lower = stricter")
    p.add_argument("--onnx", default=None, metavar="MODEL",
                   help="score with this exported window model (model_window[_int8].onnx, onnxruntime)")
    p.add_argument("--backend", default="auto", choices=["auto", "numpy", "onnx", "torch"],
                   help="auto: --onnx, else an ONNX export of this bundle in onnx/ beside it, else numpy")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kws", description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--version", action="version", version=_version())
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    s = sub.add_parser("voices", help="list the speech-synthesis voices available on this machine")
    s.add_argument("--engine", action="append", help="only this engine (espeak-ng, flite, festival); repeatable")
    s.set_defaults(func=cmd_voices)

    data = sub.add_parser("data", help="build datasets and fetch corpora").add_subparsers(
        dest="data_command", metavar="DATA_COMMAND", required=True)
    s = data.add_parser("build", help="build a speaker-disjoint dataset (manifest + feature cache) for a keyword")
    s.add_argument("--keyword", required=True, help="the wake word's text, e.g. marvin")
    s.add_argument("--out", required=True, help="dataset folder (rerunning resumes)")
    s.add_argument("--preset", default="paper", help="split sizes: paper (1000+2000 / 600x3 / 600x3) or small")
    s.add_argument("--positives", action="append", default=[], metavar="DIR",
                   help="folder of real recordings of the keyword (speaker = file-name prefix before _nohash_ or sub-folder)")
    s.add_argument("--negatives", action="append", default=[], metavar="DIR",
                   help="negative corpus folder, e.g. a Speech Commands tree (every other word becomes a negative, "
                        "and names words in the word task: see --word-task)")
    s.add_argument("--noise", action="append", default=[], metavar="DIR",
                   help="background-noise folder (default: generated coloured noise)")
    s.add_argument("--close-negatives", nargs="*", default=None, metavar="WORD",
                   help="extra close negatives (words, or [[phonemes]] for espeak-ng)")
    s.add_argument("--replace-close-negatives", action="store_true",
                   help="use only the --close-negatives given instead of adding them to the generated list")
    s.add_argument("--sizes", default=None, help="override sizes, e.g. train_pos=1000,train_neg=2000,eval_each=600")
    s.add_argument("--close-negatives-in-train", nargs="?", const="all", default="disjoint",
                   choices=["none", "disjoint", "all"],
                   help="close negatives in the training split: disjoint (default: generated words that are "
                        "never in val/test), none (the paper's protocol), all (the val/test words too; the "
                        "flag alone means all)")
    s.add_argument("--engine", action="append", default=None,
                   help="speech-synthesis engine to use (espeak-ng, flite, festival); repeatable; default all installed")
    _common_args(s)
    _recipe_args(s)
    s.set_defaults(func=cmd_data_build)

    s = data.add_parser("speech-commands", help="download, verify and unpack Google Speech Commands")
    s.add_argument("--dest", required=True, help="folder to unpack into")
    s.add_argument("--version", default="0.02", choices=["0.01", "0.02"])
    s.add_argument("--archive", default=None, help="use this already-downloaded .tar.gz instead of downloading")
    s.set_defaults(func=cmd_data_speech_commands)

    s = sub.add_parser("record", help="record a few takes of the keyword from the microphone (for --positives)",
                       description="Record takes of the keyword, one per prompt, each checked (too quiet, clipped, "
                                   "no speech, cut off -> take it again) and saved trimmed as OUT/KEYWORD-NNN.wav "
                                   "(16 kHz mono). Rerunning continues the numbering until OUT holds -n takes. "
                                   "Pass the folder to `kws train --positives` (or `kws data build --positives`): "
                                   "with under 12 takes all but one go to training (one to validation), next to the "
                                   "synthesized voices; a few takes are reused, each copy augmented differently "
                                   "(up to 20 each, at most half of the positives), so a dozen already weigh in "
                                   "training; several dozen, said in different ways and places, bring variety "
                                   "augmentation cannot. For several people use one sub-folder "
                                   "each (--out recordings/athena/alice) and pass the parent folder: then each "
                                   "person is one speaker, kept within one split.")
    s.add_argument("--keyword", required=True, help="the wake word's text, e.g. athena")
    s.add_argument("-n", type=int, default=10, help="how many takes OUT should hold in the end (default 10)")
    s.add_argument("--out", default=None, help="folder for the takes (default recordings/KEYWORD)")
    s.add_argument("--device", default=None, help="input device index or name (see `kws devices`)")
    s.add_argument("--seconds", type=float, default=2.0, help="length of each take before trimming (default 2)")
    s.add_argument("--yes", action="store_true",
                   help="do not wait for Enter: record the takes back to back, each after a countdown")
    s.add_argument("--countdown", type=float, default=3.0, help="with --yes: seconds before each take (default 3)")
    s.add_argument("--retakes", type=int, default=5,
                   help="give up (an error naming the problem) after this many rejected takes in a row (default 5)")
    s.set_defaults(func=cmd_record)

    s = sub.add_parser("train", help="train a detector (builds the dataset when --data is not given)")
    s.add_argument("--keyword", required=True)
    s.add_argument("--data", help="dataset folder from `kws data build` (default: build one under the run folder)")
    s.add_argument("--method", default="drocc-lf", choices=["drocc-lf", "bce", "drocc-oe", "drocc"],
                   help="training loss (default drocc-lf: on real speech it beat bce by 16-33 recall points on "
                        "athena/amelia/right and tied on yes/stop/left; bce trains ~5x faster)")
    s.add_argument("--model", default="fastgrnn", choices=["fastgrnn", "lstm", "gru"])
    s.add_argument("--out", help="bundle path (default KEYWORD.kws)")
    s.add_argument("--epochs", type=int, default=None, help="training epochs (default depends on the model)")
    s.add_argument("--hidden", type=int, default=None, help="hidden units (default 64)")
    s.add_argument("--run-dir", help="checkpoints and plots (default runs/KEYWORD-METHOD-MODEL-seedN); rerun resumes")
    s.add_argument("--preset", default="paper", help="dataset sizes when building one (no --data): paper or small")
    s.add_argument("--positives", action="append", default=[], metavar="DIR",
                   help="when building the dataset (no --data): folder of real recordings of the keyword, e.g. from "
                        "`kws record`; repeatable. About 70%% of the files train, the rest val/test (sub-folders = "
                        "speakers); a few are reused, augmented anew (up to 20 copies each, at most half of the "
                        "positives); synthesis fills the rest")
    s.add_argument("--negatives", action="append", default=[], metavar="DIR",
                   help="when building the dataset (no --data): folder of other speech or sounds (or a Speech "
                        "Commands tree, which also feeds the word task and mining: see --word-task); repeatable")
    s.add_argument("--sparsity", type=float, default=1.0,
                   help="FastGRNN: kept fraction of W and U (< 1 trains dense, then IHT, then on a fixed support)")
    s.add_argument("--teacher", action="append", default=None, metavar="openwakeword-head|BUNDLE.kws|openwakeword",
                   help="learn from a teacher during training; the bundle does not change in size or format. "
                        "Score teachers (the model also learns their score of every training clip; repeat the option "
                        "for their mean): openwakeword-head, a head on openWakeWord's speech embedding trained here "
                        "on the same clips, a few minutes once per dataset (needs `make peers`; its students gained "
                        "-6 to +12 points against the same seed untaught, within the seed spread: BENCHMARKS.md "
                        "text_only_oww); BUNDLE.kws, a model of the same keyword and "
                        "featurizer (e.g. from `kws train --ensemble N`; see --distill). openwakeword: distil "
                        "openWakeWord's speech "
                        "embedding into the model's states (no measurable gain so far, BENCHMARKS.md "
                        "text_only_distill)")
    s.add_argument("--ensemble", type=int, default=1, metavar="N",
                   help="train N models (seeds SEED..SEED+N-1, in RUN_DIR/member<i>) and ship their mean score as "
                        "one model of about N times the training time, size and compute; on six real-speech words 2 "
                        "models gained 1.6-6.4 recall points over one and 4 gained 2.6-10.6 (BENCHMARKS.md "
                        "text_only_clean)")
    s.add_argument("--distill", action="store_true",
                   help="with --ensemble N: then train one model of a member's size that learns the N models' mean "
                        "score (with any --teacher: their mean logit) (RUN_DIR/student, seed SEED+N) and ship it "
                        "instead; the ensemble stays in RUN_DIR/ensemble.kws (BENCHMARKS.md text_only_kd)")
    s.add_argument("--mine", type=int, default=None, metavar="N",
                   help="hard-negative mining: after training, the N word-task clips the model scores highest (other "
                        "words it takes for the keyword) join the negatives for 20 more epochs; the mined model ships "
                        "unless the first one's validation AUC is higher by more than 0.005 (TrainHparams.mine_select, "
                        "kws.train.api.MINE_AUC_MARGIN). Default: "
                        "10%% of the word-task clips, when the dataset has them; 0 = off")
    s.add_argument("--phone-task", type=float, default=None, metavar="WEIGHT",
                   help="also teach the model to spell the word-task clips phone by phone (CTC on every frame, a "
                        "training-only head; TrainHparams.phone_task), so it hears the sounds real speakers make in "
                        "other words; needs word-task clips. Default: off: at 0.5 it lost 2.0 points of real recall "
                        "on average over 16 paired runs of 4 keywords (BENCHMARKS.md text_only_phone)")
    _common_args(s)
    _recipe_args(s)
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("ensemble", help="join trained bundles into one model of their mean score")
    s.add_argument("bundles", nargs="+", help="two or more .kws bundles of one keyword, model kind and featurizer "
                                             "(other datasets are fine: their normalization is folded in)")
    s.add_argument("--out", "-o", required=True, help="the ensemble bundle to write")
    s.add_argument("--data", help="the dataset they were trained on (default: the one recorded in the first "
                                  "bundle); its validation split calibrates the thresholds")
    s.set_defaults(func=cmd_ensemble)

    s = sub.add_parser("eval", help="recall at 3%%/5%% FPR, AUC and per-kind false-positive rates on a dataset split")
    s.add_argument("bundle")
    s.add_argument("--data", required=True)
    s.add_argument("--split", default="test", choices=["train", "val", "test"])
    s.add_argument("--int8", action="store_true", help="evaluate the int8-quantized model instead of float")
    s.add_argument("--plot", help="write the ROC/DET plot here (PNG)")
    s.set_defaults(func=cmd_eval)

    s = sub.add_parser("detect", help="find the keyword in audio files (any length, WAV/FLAC/OGG)")
    s.add_argument("bundle")
    s.add_argument("files", nargs="+")
    s.add_argument("--json", action="store_true", help="one JSON object per file on stdout")
    _threshold_args(s)
    _detector_args(s)
    s.set_defaults(func=cmd_detect)

    s = sub.add_parser("listen", help="detect the keyword live on a microphone")
    s.add_argument("bundle")
    s.add_argument("--device", default=None, help="input device index or name (see `kws devices`)")
    s.add_argument("--on-detect", default=None, metavar="COMMAND", help="shell command to run on each detection")
    s.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    _threshold_args(s)
    _detector_args(s)
    s.set_defaults(func=cmd_listen)

    s = sub.add_parser("devices", help="list audio input devices")
    s.set_defaults(func=cmd_devices)

    s = sub.add_parser("export", help="export a bundle: int8/float ONNX or a self-contained C library")
    s.add_argument("bundle")
    s.add_argument("--format", required=True, choices=["onnx", "c"])
    s.add_argument("--int8", action="store_true", help="quantize to int8 (always on for --format c)")
    s.add_argument("--out", required=True, help="output folder")
    s.add_argument("--data", help="dataset folder whose training features calibrate the int8 scales "
                                  "(default: the dataset recorded in the bundle)")
    s.set_defaults(func=cmd_export)

    s = sub.add_parser("demo", help="text to device in one go for 'marvin': dataset, training, export, detection")
    s.add_argument("--workdir", default="demo", help="where the demo writes (rerunning resumes)")
    s.add_argument("--quick", action="store_true", help="small sizes, for a fast smoke run")
    s.set_defaults(func=cmd_demo)
    return p


def _common_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=None, help="parallel workers (default: all cores)")


def _version() -> str:
    from kws import __version__

    return f"kws {__version__}"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KwsError as e:
        print(f"kws: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("kws: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
