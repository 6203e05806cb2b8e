"""``launch.py render VIDEO... --out DIR``: stereo foley for videos (WAV, CoT, optional MP4 with the video copied),
one JSON line per video on stdout (DESIGN "Command-line contract")."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from engine.commands.common import (
    CliError,
    add_sampling_options,
    add_weights,
    guidance,
    nonneg_int,
    positive_int,
    sampling_kw,
)
from engine.commands.fields import add_fields, field_default
from engine.level import LevelSettings
from engine.pipeline import RenderSettings
from engine.prismaudio.architecture import OFFICIAL_CFG


def build(r) -> None:
    r.add_argument("videos", nargs="*", metavar="VIDEO", help="video files; outputs are named after each stem")
    r.add_argument("--out", required=True, help="folder for <stem>.wav, <stem>.cot.json (and <stem>.mp4)")
    r.add_argument(
        "--cot",
        help="CoT JSON file (semantic, temporal, aesthetic, spatial, optional negative); default: the planner's",
    )
    add_fields(
        r,
        RenderSettings,
        "seed",
        "steps",
        "cfg",
        seed={"type": nonneg_int, "default": None, "help": "noise seed (default: random, printed)"},
        steps={"type": positive_int, "help": "sampling steps"},
        cfg={
            "type": guidance,
            "default": None,
            "help": f"classifier-free guidance scale (default {field_default(RenderSettings, 'cfg')}; "
            f"{OFFICIAL_CFG} with --features, the published model's)",
        },
    )
    add_sampling_options(r, "")
    r.add_argument(
        "--candidates",
        type=positive_int,
        default=1,
        help="best-of-N: render seeds seed .. seed + N - 1 and keep the best by the weighted reward",
    )
    add_weights(r, "reward weights of best-of-N")
    r.add_argument("--mux", action="store_true", help="also write <stem>.mp4: the video stream copied + the audio")
    add_fields(
        r,
        LevelSettings,
        "lufs_target",
        "ceiling_dbtp",
        lufs_target={"flags": ("--lufs",), "metavar": "LUFS"},
        ceiling_dbtp={"flags": ("--true-peak",), "metavar": "DBTP"},
    )
    r.add_argument("--model", default="default", help="model name under assets/models or a model folder")
    f = r.add_argument_group("published PrismAudio from precomputed features (instead of VIDEO...)")
    f.add_argument("--features", metavar="FILE.npz", help="video_features, text_features, sync_features, duration")
    f.add_argument(
        "--sync",
        default="official",
        choices=["official", "features"],
        help="sync features: the "
        "released pipeline's empty embedding (official) or the file's, resampled to the latent length",
    )
    f.add_argument(
        "--raw",
        action="store_true",
        help="a 32-bit float WAV with nothing changed after decoding, and <stem>.latent.npy (64, N) float32 beside it",
    )
    r.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Render each video with one CoT: WAV + CoT (+ MP4) per video and one JSON line on stdout; or, with
    ``--features``, the published PrismAudio model from precomputed features."""
    if args.features:
        return _run_features(args)
    if not args.videos:
        raise CliError("give one or more videos to render (or --features FILE.npz with a PrismAudio --model)")
    from engine.bundle import load_bundle
    from engine.pipeline import prepare_video, render_plan
    from engine.planner.default import load_planner

    out, videos, given, source, settings = _inputs(args)
    bundle = load_bundle(args.model)
    prepared = [prepare_video(v, bundle) for v in videos]  # every video is checked before anything is written
    planner = load_planner(args.model) if source == "planner" else None
    out.mkdir(parents=True, exist_ok=True)
    if source == "fallback":
        print(
            f"note: no --cot given and model {bundle.name!r} has no planner; using the generic fallback CoT",
            file=sys.stderr,
        )
    for video, prep in zip(videos, prepared):
        start = time.perf_counter()
        cot = planner.plan(video) if planner is not None else given  # each video gets its own plan
        audio, take = _take(args, prep, cot, bundle, settings, _after_a_second(f"render {video.name}"))
        paths, level = _write_take(out, video, audio, bundle.sample_rate, cot, args.mux, args.level)
        line = {"video": str(video), **paths, "model": bundle.name, "seed": take.pop("seed"), "steps": settings.steps}
        line |= {
            "cfg": settings.cfg,
            "video_cfg": settings.video_cfg,
            "declick": settings.declick,
            "guidance_interval": list(settings.guidance_interval),
            "cot_source": source,
            "duration": prep.duration,
            "samples": len(audio),
        }
        line |= {"sample_rate": bundle.sample_rate, "windows": len(render_plan(prep, bundle, settings))}
        line |= {k: level[k] for k in ("lufs", "true_peak_dbtp", "limited_db", "gain_db")}
        line |= take | {"seconds": round(time.perf_counter() - start, 3)}
        print(json.dumps(line), flush=True)
    return 0


def _run_features(args: argparse.Namespace) -> int:
    """``render --features FILE.npz --model FOLDER``: one take of the published model (engine.prismaudio)."""
    import secrets

    from engine.prismaudio.features_render import render_features

    if args.videos:
        raise CliError("give videos or --features FILE.npz, not both")
    seed = secrets.randbelow(2**31) if args.seed is None else args.seed
    cfg = OFFICIAL_CFG if args.cfg is None else args.cfg
    result = render_features(args.features, args.model, args.out, seed, args.steps, cfg, args.sync, args.raw)
    print(json.dumps({"features": str(args.features), **result}), flush=True)
    return 0


def _inputs(args: argparse.Namespace):
    """Validate everything before any output exists: -> (out folder, videos, CoT, CoT source, settings)."""
    import secrets

    from engine.best_of_n import MAX_CANDIDATES
    from engine.cot import load_cot
    from engine.pipeline import FALLBACK_COT
    from engine.planner.default import has_planner

    if args.candidates > MAX_CANDIDATES:
        raise CliError(f"--candidates must be at most {MAX_CANDIDATES}, got {args.candidates}")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise CliError(f"--out {out} exists and is not a folder")
    videos = [Path(v) for v in args.videos]
    stems = [v.stem for v in videos]
    clash = sorted({s for s in stems if stems.count(s) > 1})
    if clash:
        raise CliError(f"several videos are named {clash[0]!r}; their outputs would overwrite each other")
    cot, source = (load_cot(args.cot), "file") if args.cot else (None, "planner")
    if cot is None and not has_planner(args.model):
        cot, source = FALLBACK_COT, "fallback"
    seed = secrets.randbelow(2**31) if args.seed is None else args.seed
    args.level = LevelSettings(lufs_target=args.lufs_target, ceiling_dbtp=args.ceiling_dbtp)  # checked up front
    cfg = field_default(RenderSettings, "cfg") if args.cfg is None else args.cfg
    settings = RenderSettings(seed=seed, steps=args.steps, cfg=cfg, **sampling_kw(args))
    return out, videos, cot, source, settings


def _write_take(out: Path, video: Path, audio, sample_rate: int, cot, mux: bool, level) -> tuple[dict, dict]:
    """<stem>.wav (24-bit, the take's own rate), <stem>.cot.json and with ``mux`` <stem>.mp4 into ``out``, made
    level-safe, through the studio's own writer (`engine.export.export_take`: the files appear together or not
    at all) -> ({"wav", "cot", "mp4"}: paths or None, the level report)."""
    from engine.export import export_take

    formats = ("wav", "cot", "mp4") if mux else ("wav", "cot")
    n = len(audio)
    report = export_take(
        audio,
        sample_rate,
        out,
        video.stem,
        duration=n / sample_rate,  # the render is already exactly the video's length
        formats=formats,
        video=video,
        cot=cot,
        lufs_target=level.lufs_target,
        ceiling_dbtp=level.ceiling_dbtp,
        rate=None,
        mode=0o644,
    )
    return {k: report["files"].get(k) for k in ("wav", "cot", "mp4")}, report["level"]


def _after_a_second(label: str):
    """Progress on stderr once a render has taken more than a second: one updating line on a terminal,
    else a line per quarter."""
    start, tty, shown = time.perf_counter(), sys.stderr.isatty(), set()

    def report(done: int, total: int) -> None:
        if time.perf_counter() - start <= 1.0:
            return
        if tty:
            print(f"\r{label}: {done}/{total}", end="\n" if done == total else "", file=sys.stderr, flush=True)
        elif (quarter := 4 * done // total) not in shown:
            shown.add(quarter)
            print(f"{label}: {done}/{total} steps", file=sys.stderr, flush=True)

    return report


def _take(args: argparse.Namespace, prep, cot, bundle, settings, progress):
    """One render, or with ``--candidates N`` the best of N seeds by the weighted reward:
    -> (audio (N, 2), {"seed", "scores", ...} for the JSON line)."""
    from engine.pipeline import render

    if args.candidates == 1:
        return render(prep, cot, bundle, settings, progress=progress), {"seed": settings.seed, "scores": None}
    from engine.best_of_n import best_of_n
    from engine.rewards import load_reward_heads

    ranked = best_of_n(prep, bundle, cot, settings, args.candidates, args.weights, load_reward_heads(), progress)
    best = ranked[0].summary()
    fields = {"seed": best["seed"], "scores": best["scores"], "total": best["total"], "weights": args.weights}
    return ranked[0].audio, fields | {"candidates": [c.summary() for c in ranked]}
