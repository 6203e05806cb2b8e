#!/usr/bin/env python
"""The single entry point of the foley studio.

    python launch.py                 start the studio (127.0.0.1:7860)
    python launch.py render VIDEO... --out DIR   stereo foley for videos (WAV, CoT, optional MP4 with the video copied)
    python launch.py score VIDEO AUDIO   reward scores of a take (semantic, temporal, aesthetic, spatial) as JSON
    python launch.py world ...       write a FoleyWorld split (mp4 + wav + json per clip), or time the generator
    python launch.py bench ...       FoleyBench on a split: table as JSON on stdout and markdown on stderr
    python launch.py train ...       training commands (metrics, codec, features, pretrain, planner, grpo, ingest,
                                     finetune, dpo, blend, house, measure, measure-dpo)

Bad input ends with a one-line error on stderr and exit code 2; set FOLEY_DEBUG=1 to see tracebacks.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
# OpenMP's wait policy is left to the user: on an idle machine the default (threads spin a moment before
# sleeping) renders two to three times faster than OMP_WAIT_POLICY=PASSIVE (docs/RESULTS.md, "Rendering
# speed"); PASSIVE is the better choice only when other jobs share the cores.


DEFAULT_CODEC = ROOT / "assets" / "models" / "default" / "codec.safetensors"  # the shipped codec


class CliError(Exception):
    """Bad command-line input; printed as one line."""


def _whole_number(minimum: int, wanted: str):
    """An argparse type: an int >= ``minimum``; ``wanted`` names the range in the error."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {value}")
        return value

    return parse


_positive_int = _whole_number(1, "a positive number")
_nonneg_int = _whole_number(0, "zero or more")


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports usage errors in one line (the CLI contract), exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"error: {self.prog}: {message}\n")


def _world_config(args: argparse.Namespace):
    from trainer.foleyworld.scene import WorldConfig

    try:
        return WorldConfig(
            duration=args.duration, fps=args.fps, width=args.width, height=args.height, sample_rate=args.sample_rate
        )
    except ValueError as exc:
        raise CliError(str(exc)) from None


def cmd_world(args: argparse.Namespace) -> int:
    """Write a split, or measure generation speed."""
    cfg = _world_config(args)
    if args.speed:
        from trainer.foleyworld.speed import measure_speed

        result = measure_speed(cfg, count=args.count, video=not args.no_video)
        print(json.dumps(result))
        return 0
    if not args.out:
        raise CliError("world needs --out DIR (or --speed to time the generator)")
    from trainer.foleyworld.splits import write_split

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise CliError(f"--out {out} exists and is not a folder")
    metas = write_split(
        args.split,
        out,
        args.count,
        cfg,
        start=args.start,
        video=not args.no_video,
        random_duration=args.random_duration,
        progress=_progress(f"world {args.split}"),
    )
    print(json.dumps({"split": args.split, "out": str(out), "clips": len(metas)}))
    return 0


def _progress(label: str):
    """Progress on stderr: one updating line on a terminal, else a line every 5 %."""
    tty = sys.stderr.isatty()

    def show(done: int, total: int) -> None:
        if tty:
            print(f"\r{label}: {done}/{total}", end="\n" if done == total else "", file=sys.stderr, flush=True)
        elif done == total or done % max(1, total // 20) == 0:
            print(f"{label}: {done}/{total}", file=sys.stderr, flush=True)

    return show


def _render_speed(args: argparse.Namespace) -> int:
    """The render-speed benchmark on a 9 s FoleyWorld test clip written to a temporary folder."""
    import tempfile

    from engine.bench.speed import plan_speed, render_speed
    from engine.media import write_mp4
    from engine.planner import has_planner
    from trainer.foleyworld.scene import WorldConfig
    from trainer.foleyworld.splits import make_clip
    from trainer.foleyworld.video import render_frames

    clip = make_clip("test-single", 0, WorldConfig(duration=9.0))
    cfg = clip.scene.config
    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "clip.mp4"
        write_mp4(video, render_frames(clip.scene), cfg.fps, clip.audio.audio, cfg.sample_rate)
        report = render_speed(
            args.model,
            video,
            runs=args.speed,
            steps=args.steps,
            cfg=args.cfg,
            progress=_progress("speed"),
            options=_sampling_kw(args),
        )
        if has_planner(args.model):
            report["plan"] = plan_speed(args.model, video, runs=args.speed)
    print(json.dumps(report))
    return 0


def _planner(model: str):
    from engine.planner import load_planner

    return load_planner(model)


def _planner_bench(args: argparse.Namespace, data: Path) -> int:
    """`bench --planner`: how well the model's planner reads the split's silent videos."""
    from engine.bench.planning import planner_accuracy

    planner = _planner(args.model)
    families = {c.name: c.family for c in planner.net.config.classes}
    result = planner_accuracy(planner.read, families, data, args.limit, progress=_progress(f"plan {args.split}"))
    print(json.dumps({"split": args.split, "model": args.model, **result}))
    return 0


def _grpo_curves(args: argparse.Namespace) -> int:
    """bench --grpo-runs FAST,FLOW: the held-out reward against training time of two GRPO runs."""
    from trainer.grpo_compare import compare, figure

    runs = [r for r in args.grpo_runs.split(",") if r]
    if len(runs) != 2:
        raise CliError(f"--grpo-runs takes two run folders, FAST,FLOW; got {args.grpo_runs!r}")
    report = compare(*runs, smooth=args.smooth)
    if args.figure:
        report["figure"] = str(figure(*runs, args.figure, smooth=args.smooth))
    print(json.dumps(report))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """FoleyBench rows on a written split, or (--speed) the render-speed benchmark."""
    from engine.bench.run import bench_split, markdown_table

    if args.speed:
        return _render_speed(args)
    if args.grpo_runs:
        return _grpo_curves(args)

    data = Path(args.data or ROOT / "data" / args.split)
    if not (data / "index.json").is_file():
        raise CliError(
            f"no FoleyWorld split at {data}; write one with: python launch.py world --split {args.split} "
            f"--count 200 --out {data}"
        )
    if args.planner:
        return _planner_bench(args, data)
    rows = args.rows.split(",")
    extra = {}
    if "codec" in rows:
        from engine.bench.run import codec_row
        from engine.codec import load_codec
        from engine.models import MODELS_DIR

        folder = Path(args.model) if Path(args.model).is_dir() else MODELS_DIR / args.model
        if not (folder / "codec.safetensors").is_file():
            raise CliError(f"no codec in {folder}; train one with: python launch.py train codec")
        extra["codec"] = codec_row(load_codec(folder / "codec.safetensors").eval())
    if args.time_shift is not None:
        return _follow_times(args, data)
    if "model" in rows:
        from engine.bench.run import render_row
        from engine.models import load_bundle
        from engine.pipeline import RenderSettings

        bundle = load_bundle(args.model)
        planner = _planner(args.model) if args.cot == "planner" else None
        settings = RenderSettings(
            seed=args.seed, steps=args.steps, cfg=args.cfg, rescale=args.rescale, **_sampling_kw(args)
        )
        extra["model"] = render_row(bundle, data, settings, planner, args.candidates, args.weights)
    if args.rewards:  # the reward heads instead of the FoleyBench metrics
        from engine.bench.rewards import reward_markdown, reward_table

        result = reward_table(data, rows, args.weights, args.limit, extra_rows=extra, progress=_progress("rewards"))
        print(json.dumps(result))
        print(reward_markdown(result), file=sys.stderr)
        return 0
    result = bench_split(data, rows=rows, limit=args.limit, extra_rows=extra, progress=_progress(f"bench {args.split}"))
    if "model" in result["rows"]:  # name the row after the model and where its CoT came from
        name = f"model {args.model}" + (" (planner CoT)" if args.cot == "planner" else "")
        name += f" (best of {args.candidates})" if args.candidates > 1 else ""
        result["rows"] = {(name if k == "model" else k): v for k, v in result["rows"].items()}
    print(json.dumps(result))
    print(markdown_table(result), file=sys.stderr)
    return 0


def _follow_times(args: argparse.Namespace, data: Path) -> int:
    """Renders with the Temporal block's times as written and moved by --time-shift, scored against both."""
    from engine.bench.run import follow_times, follow_times_table
    from engine.models import load_bundle
    from engine.pipeline import RenderSettings

    bundle = load_bundle(args.model)
    kw = dict(seed=args.seed, steps=args.steps, cfg=args.cfg, rescale=args.rescale)
    settings = RenderSettings(**kw, **_sampling_kw(args))
    result = follow_times(bundle, data, settings, args.time_shift, args.limit, progress=_progress("follow times"))
    result["model"] = args.model
    print(json.dumps(result))
    print(follow_times_table(result), file=sys.stderr)
    return 0


def _train_features(args: argparse.Namespace) -> dict:
    """Build (or grow, or just check) the generator's feature cache: --clips train clips from --first-scene."""
    from trainer.features import FeatureConfig, build_features

    codec = Path(args.codec or DEFAULT_CODEC)
    if not codec.is_file():
        raise CliError(f"codec file {codec} not found; pass --codec FILE (a codec trained by trainer.train_codec)")
    cues = Path(args.cues) if args.cues else None
    if cues is not None and not cues.is_file():
        raise CliError(f"planner file {cues} not found; pass --cues FILE (a planner trained by `train planner`)")
    cfg = FeatureConfig(start=args.first_scene, count=args.clips)
    index = build_features(args.cache, codec, cfg, progress=_progress("features"), planner_path=cues)
    return {"cache": str(args.cache), "clips": len(index["clips"]), "codec": str(codec), "cues": args.cues}


def _pretrain_progress(done: int, total: int, entry: dict) -> None:
    print(
        f"pretrain: step {done}/{total} loss {entry['loss']:.4f} lr {entry['lr']:.2e} "
        f"{entry['sec_per_step']:.2f} s/step",
        file=sys.stderr,
        flush=True,
    )


def _train_pretrain(args: argparse.Namespace) -> dict:
    """Pretrain the generator and video encoder on the cache (built first when it lacks --clips clips)."""
    from engine.video_encoder import VIDEO_ENCODER_PRESETS
    from trainer.features import load_index
    from trainer.pretrain import PretrainConfig, export_checkpoint, pretrain

    cache = Path(args.cache)
    if not (cache / "index.json").is_file() or len(load_index(cache)["clips"]) < args.clips:
        _train_features(args)
    cfg = PretrainConfig(
        preset=args.preset,
        video_preset=args.preset if args.preset in VIDEO_ENCODER_PRESETS else "default",
        cot_mode=args.cot_mode,
        steps=args.steps or 20_000,
        batch=args.batch or 16,
        lr=args.lr or 3e-4,
        warmup=args.warmup or 500,
        seed=args.seed,
        cache=str(cache),
        out=str(args.out or ROOT / "runs" / f"pretrain_{args.cot_mode}"),
        codec=args.codec,
        clips=args.clips,
        mixed_precision=args.mixed_precision,
        threads=args.threads,
        stop_at=args.stop_at,
        init=args.init,
        recue=args.recue,
        timeline=args.timeline,
    )
    if args.snapshot:
        return {"snapshot": str(export_checkpoint(cfg, args.snapshot))}
    result = pretrain(cfg, progress=_pretrain_progress, resume=args.resume)
    last = result["history"][-1] if result["history"] else {}
    return {k: v for k, v in result.items() if k != "history"} | {"loss": last.get("loss")}


def _train_codec(args: argparse.Namespace) -> dict:
    """Train the stereo codec on FoleyWorld crops; checkpoints beside the output, resumable."""
    from trainer.train_codec import train_codec

    out = Path(args.codec or DEFAULT_CODEC)
    out.parent.mkdir(parents=True, exist_ok=True)

    def show(step: int, total: int, parts: dict) -> None:
        print(f"codec {step}/{total} " + " ".join(f"{k}={v:.3f}" for k, v in parts.items()), file=sys.stderr)

    report = train_codec(
        out,
        preset=args.preset,
        steps=args.steps or 6_000,
        batch=args.batch or 16,
        lr=args.lr or 1e-3,
        seed=args.seed,
        resume=args.resume,
        progress=show,
    )
    return {k: v for k, v in report.items() if k != "history"}


def _int_list(text: str, flag: str) -> tuple[int, ...]:
    """ "24,48,80" -> (24, 48, 80); `CliError` unless every item is a positive whole number."""
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = ()
    if not values or min(values) < 1:
        raise CliError(f"{flag} must be positive whole numbers separated by commas, got {text!r}")
    return values


def _train_planner(args: argparse.Namespace) -> dict:
    """Train the default planner on rendered FoleyWorld scenes; checkpoints beside the output, resumable."""
    import torch

    from trainer.train_planner import PlannerTrainConfig, train_planner

    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out or ROOT / "runs" / "planner" / "planner.safetensors")
    if out.suffix != ".safetensors":
        raise CliError(f"--out for the planner is a .safetensors file, got {out}")
    config = PlannerTrainConfig(
        steps=args.steps or 3000,
        batch=args.batch or 8,
        lr=args.lr or 2e-3,
        warmup=args.warmup or 100,
        seed=args.seed,
        device=args.device,
        workers=args.workers,
        init=args.init,
        first_scene=args.first_scene,
        stop_at=args.stop_at,
        layout=args.layout,
        flip=args.flip,
        **({"channels": _int_list(args.channels, "--channels")} if args.channels else {}),
        **({"width": args.width} if args.width else {}),
    )

    def show(step: int, total: int, parts: dict) -> None:
        print(f"planner {step}/{total} " + " ".join(f"{k}={v:.3f}" for k, v in parts.items()), file=sys.stderr)

    report = train_planner(out, config, resume=args.resume, progress=show)
    return {k: v for k, v in report.items() if k != "history"}


def _calibrate_planner(args: argparse.Namespace) -> dict:
    """Per-class reading thresholds of a planner file, chosen on FoleyWorld val clips."""
    import torch

    from engine.models import MODELS_DIR
    from engine.planner import PLANNER_FILE
    from trainer.calibrate_planner import calibrate

    if args.threads:
        torch.set_num_threads(args.threads)
    src = Path(args.planner_file or MODELS_DIR / "default" / PLANNER_FILE)
    out = Path(args.out or src.with_name(f"{src.stem}_calibrated.safetensors"))
    if out.suffix != ".safetensors":
        raise CliError(f"--out for the planner is a .safetensors file, got {out}")
    if args.event_beta <= 0:
        raise CliError(f"--event-beta must be > 0, got {args.event_beta:g}")
    work = ROOT / "data" / "planner-calibration"
    return calibrate(
        src, args.calibration_clips, out, work, args.event_beta, _progress("calibrate"), objective=args.objective
    )


def _train_grpo(args: argparse.Namespace) -> dict:
    """Fast-GRPO (or with --flow Flow-GRPO) of a model with the four reward heads; resumable."""
    from trainer.grpo import GrpoConfig, train_grpo

    cfg = GrpoConfig(
        model=args.model,
        out=str(args.out or ROOT / "runs" / "grpo"),
        prompts=args.prompts,
        dataset=args.dataset,
        held_out=args.held_out,
        clips=args.prompt_clips,
        eval_prompts=args.eval_prompts,
        eval_clips=args.eval_clips,
        duration=args.duration,
        iterations=args.iterations,
        group=args.group,
        steps=args.sample_steps,
        window=args.sample_steps if args.flow else args.window,
        weights=args.weights,
        per_reward_norm=args.per_reward_norm,
        shared_prefix=args.shared_prefix,
        kl=args.kl,
        lr=args.lr or 1e-5,
        minibatch=args.batch or 4,
        lora_rank=args.lora_rank or 0,
        eval_every=10 if args.eval_every is None else args.eval_every,
        seed=args.seed,
        threads=args.threads,
        max_minutes=args.max_minutes,
    )

    def show(e: dict) -> None:
        parts = [f"{k[7:]}={e[k]:.3f}" for k in e if k.startswith("reward_")]
        if "kl" in e:
            parts += [f"kl={e['kl']:.2e}", f"clip={e['clip_frac']:.3f}", f"nfe={e['policy_nfe_per_sample']:g}"]
        parts += [f"eval={e['eval_weighted']:.3f}"] if "eval_weighted" in e else []
        parts += [f"{e['seconds']:.1f}s"] if "seconds" in e else []
        print(f"grpo {e['iteration']}/{cfg.iterations} " + " ".join(parts), file=sys.stderr, flush=True)

    result = train_grpo(cfg, progress=show, resume=args.resume)
    last = result["history"][-1] if result["history"] else {}
    summary = {k: v for k, v in result.items() if k not in ("history", "policy", "window_starts")}
    return summary | {"method": cfg.method, "last": last}


def _project_pairs(args: argparse.Namespace) -> None:
    """``train dpo --project NAME``: the project's starred and rejected takes as a pairs file in --out."""
    from app.settings import StudioSettings
    from app.training import write_project_pairs

    settings = StudioSettings.from_env()
    out = Path(args.out or ROOT / "runs" / "dpo")
    args.pairs = str(write_project_pairs(settings, args.project, out / "pairs_source.json"))


def cmd_train(args: argparse.Namespace) -> int:
    """Training subcommands."""
    from trainer.commands import COMMANDS, run

    if args.what in COMMANDS:
        if args.what == "dpo" and args.project:
            _project_pairs(args)
        print(json.dumps(_json_safe(run(args))))
        return 0
    if args.what == "grpo":
        print(json.dumps(_train_grpo(args)))
        return 0
    if args.what == "planner":
        print(json.dumps(_train_planner(args)))
        return 0
    if args.what == "calibrate-planner":
        print(json.dumps(_calibrate_planner(args)))
        return 0
    if args.what in ("features", "pretrain"):
        print(json.dumps(_train_features(args) if args.what == "features" else _train_pretrain(args)))
        return 0
    if args.what == "codec":
        print(json.dumps(_train_codec(args)))
        return 0
    if args.what == "metrics":
        from trainer.metric_models import train_metric_models

        if args.house_per_class and not args.out:
            raise CliError("a judge that knows the house classes goes in its own folder: give --out DIR")
        report = train_metric_models(
            out_dir=Path(args.out or ROOT / "assets" / "bench"),
            n_train=args.clips,
            epochs=args.epochs,
            seed=args.seed,
            progress=_progress("train metrics"),
            house_per_class=args.house_per_class,
        )
        print(json.dumps(report))
        return 0
    raise CliError(f"unknown training command {args.what!r}")


def _weights(text: str) -> dict[str, float]:
    """``semantic=1,temporal=0.6`` -> weights of the four reward dimensions (left out = 0), all >= 0."""
    from engine.errors import UserInputError
    from engine.rewards.weights import parse_weights

    try:
        return parse_weights(text)
    except UserInputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_weights(parser, what: str) -> None:
    """The --weights option (the four reward dimensions, PrismAudio's weights by default)."""
    default = "semantic=1,temporal=0.6,aesthetic=0.1,spatial=0.4"
    parser.add_argument("--weights", type=_weights, default=default, help=f"{what}, e.g. {default} (left out = 0)")


def _add_sampling_options(parser, what: str) -> None:
    """--guidance-interval, --video-cfg, --shift, --no-declick and --no-gate (left out: `RenderSettings`' defaults,
    the studio's)."""
    parser.add_argument(
        "--guidance-interval",
        type=_interval,
        default=None,
        metavar="LO:HI",
        help=f"{what}guide only at noise levels LO <= t <= HI (1 = noise, 0 = data), the conditional model "
        "elsewhere; 0:1 guides every step (default: the studio's, see docs/RESULTS.md)",
    )

    parser.add_argument(
        "--video-cfg",
        type=_video_cfg,
        default=None,
        metavar="S",
        help=f"{what}guidance scale of the picture and motion on top of the text's --cfg; 'same' for plain "
        "guidance at --cfg (default: the studio's, see docs/RESULTS.md)",
    )
    parser.add_argument(
        "--shift",
        type=_shift,
        default=None,
        metavar="S",
        help=f"{what}timestep shift of the sampling grid: above 1 spends more steps near the noise end "
        "(default: the studio's, see docs/RESULTS.md)",
    )
    parser.add_argument(
        "--no-declick", action="store_true", help=f"{what}decode the sampled latent without de-clicking its envelope"
    )
    parser.add_argument(
        "--no-gate",
        action="store_true",
        help=f"{what}keep the weak envelope rises where the picture shows no event (no transient gate)",
    )


def _video_cfg(text: str) -> float | str:
    """--video-cfg: a guidance scale, or "same" (the --cfg scale: plain guidance)."""
    return "same" if text == "same" else _guidance(text)


def _shift(text: str) -> float:
    """--shift: a finite number above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value < float("inf"):  # NaN fails too
        raise argparse.ArgumentTypeError(f"expected a finite number above 0, got {text}")
    return value


def _sampling_kw(args: argparse.Namespace) -> dict:
    """RenderSettings keywords for --guidance-interval, --video-cfg, --shift, --no-declick and --no-gate: nothing for
    what was left out."""
    kw = {} if args.guidance_interval is None else {"guidance_interval": args.guidance_interval}
    if args.shift is not None:
        kw["shift"] = args.shift
    if args.video_cfg is not None:
        kw["video_cfg"] = None if args.video_cfg == "same" else args.video_cfg
    return kw | ({"declick": False} if args.no_declick else {}) | ({"gate": False} if args.no_gate else {})


def _guidance(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text}")
    return value


def _interval(text: str) -> tuple[float, float]:
    """LO:HI, the noise levels (1 = noise, 0 = data) at which guidance applies."""
    try:
        lo, hi = map(float, text.split(":"))  # not two numbers: ValueError
    except ValueError:
        lo = hi = float("nan")
    if not 0.0 <= lo <= hi <= 1.0:
        raise argparse.ArgumentTypeError(f"expected LO:HI with 0 <= LO <= HI <= 1, got {text!r}")
    return lo, hi


def _render_inputs(args: argparse.Namespace):
    """Validate everything before any output exists: -> (out folder, videos, CoT, CoT source, settings)."""
    import secrets

    from engine.best_of_n import MAX_CANDIDATES
    from engine.cot import load_cot
    from engine.pipeline import FALLBACK_COT, RenderSettings
    from engine.planner import has_planner

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
    settings = RenderSettings(seed=seed, steps=args.steps, cfg=args.cfg, **_sampling_kw(args))
    return out, videos, cot, source, settings


def _write_take(out: Path, video: Path, audio, sample_rate: int, cot, mux: bool) -> dict[str, str | None]:
    """Write <stem>.wav (PCM_24), <stem>.cot.json and with ``mux`` <stem>.mp4 into ``out``: each is staged
    under a hidden name and renamed only when all are written, so a failure leaves no output behind."""
    from engine.media import mux_audio, write_wav

    targets = {"wav": out / f"{video.stem}.wav", "cot": out / f"{video.stem}.cot.json"}
    if mux:
        targets["mp4"] = out / f"{video.stem}.mp4"
    staged = {k: p.with_name(f".{p.name}.{os.getpid()}.part") for k, p in targets.items()}
    try:
        write_wav(staged["wav"], audio, sample_rate, subtype="PCM_24")
        staged["cot"].write_text(json.dumps(cot.to_dict(), indent=2) + "\n", encoding="utf-8")
        if mux:
            mux_audio(video, audio, sample_rate, staged["mp4"])
        for k, path in targets.items():
            os.chmod(staged[k], 0o644)  # the staging files are private (mkstemp); outputs are ordinary files
            os.replace(staged[k], path)
    except BaseException:
        for path in staged.values():
            path.unlink(missing_ok=True)
        raise
    return {k: str(targets[k]) if k in targets else None for k in ("wav", "cot", "mp4")}


def _after_a_second(label: str):
    """Progress on stderr once a render has taken more than a second: one updating line on a terminal,
    else a line per quarter."""
    import time

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


def cmd_render(args: argparse.Namespace) -> int:
    """Render each video with one CoT: WAV + CoT (+ MP4) per video and one JSON line on stdout."""
    import time

    from engine.models import load_bundle
    from engine.pipeline import prepare_video, render_plan
    from engine.planner import load_planner

    out, videos, given, source, settings = _render_inputs(args)
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
        paths = _write_take(out, video, audio, bundle.sample_rate, cot, args.mux)
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
        line |= take | {"seconds": round(time.perf_counter() - start, 3)}
        print(json.dumps(line), flush=True)
    return 0


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


def _read_take(path: Path):
    """(audio (N, 2) float32, sample rate) of a sound file, or of a media file's audio track; mono is doubled."""
    import numpy as np
    import soundfile as sf

    from engine.media import read_wav
    from engine.video_io import load_audio_track

    if not path.is_file():
        raise CliError(f"audio not found: {path}")
    try:
        audio, sr = read_wav(path)
    except (sf.LibsndfileError, RuntimeError, ValueError):
        audio, sr = load_audio_track(path), 44100  # mp4, m4a...: raises UserInputError when unreadable
        if audio is None:
            raise CliError(f"{path.name} has no audio") from None
    if len(audio) == 0:
        raise CliError(f"{path.name} holds no samples")
    if audio.shape[1] not in (1, 2):
        raise CliError(f"{path.name} has {audio.shape[1]} channels; score a stereo (or mono) take")
    return np.repeat(audio, 2, axis=1) if audio.shape[1] == 1 else audio, sr


def _json_safe(obj):
    """``obj`` with non-finite floats as None (JSON has no inf or NaN)."""
    import math

    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return None if isinstance(obj, float) and not math.isfinite(obj) else obj


def cmd_score(args: argparse.Namespace) -> int:
    """The four reward scores of a take against its video and CoT, and their weighted total, as JSON."""
    from engine.cot import load_cot
    from engine.pipeline import FALLBACK_COT
    from engine.planner import has_planner, load_planner
    from engine.rewards import as_view, load_reward_heads, weighted_total

    video = Path(args.video)
    audio, sr = _read_take(Path(args.audio))
    view = as_view(video)  # a bad video fails here, before anything loads
    if args.cot:
        cot, source = load_cot(args.cot), "file"
    elif has_planner(args.model):
        cot, source = load_planner(args.model).plan(video), "planner"
        print(f"note: no --cot given; the CoT comes from the planner of model {args.model!r}", file=sys.stderr)
    else:
        cot, source = FALLBACK_COT, "fallback"
        print(
            f"note: no --cot given and model {args.model!r} has no planner; using the generic fallback CoT",
            file=sys.stderr,
        )
    scores, info = load_reward_heads().score_take(audio, sr, view, cot)
    line = {"video": str(video), "audio": str(args.audio), "cot_source": source, "weights": args.weights}
    line |= {
        "scores": {k: round(v, 4) for k, v in scores.items()},
        "total": round(weighted_total(scores, args.weights), 4),
    }
    print(json.dumps(_json_safe(line | {"details": info})))
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    """The four CoT blocks of a video as JSON on stdout."""
    from engine.planner import load_planner

    planner = load_planner(args.model, args.planner, args.mllm_model)
    print(json.dumps(planner.plan(Path(args.video), seed=args.seed).to_dict(), indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from trainer.commands import COMMANDS as TRAIN_COMMANDS
    from trainer.commands import add_arguments as add_train_arguments

    p = OneLineParser(prog="launch.py", description="Foley authoring studio.")
    sub = p.add_subparsers(dest="command", parser_class=OneLineParser)

    w = sub.add_parser("world", help="write a FoleyWorld split or time the generator")
    w.add_argument("--split", default="train", choices=["train", "val", "test-single", "test-multi"])
    w.add_argument("--out", help="folder to write the clips into")
    w.add_argument("--count", type=_positive_int, default=10, help="number of clips")
    w.add_argument("--start", type=_nonneg_int, default=0, help="index of the first clip")
    w.add_argument("--duration", type=float, default=9.0, help="clip length in seconds (2-12)")
    w.add_argument("--random-duration", action="store_true", help="draw each clip's length in [2, 12] s")
    w.add_argument("--fps", type=float, default=24.0)
    w.add_argument("--width", type=_positive_int, default=96)
    w.add_argument("--height", type=_positive_int, default=96)
    w.add_argument("--sample-rate", type=_positive_int, default=44100)
    w.add_argument("--no-video", action="store_true", help="write only the WAV and JSON")
    w.add_argument("--speed", action="store_true", help="measure clips per second per core instead of writing")
    w.set_defaults(func=cmd_world)

    b = sub.add_parser("bench", help="FoleyBench on a written split")
    b.add_argument("--split", default="test-single", choices=["val", "test-single", "test-multi"])
    b.add_argument("--data", help="split folder (default data/<split>)")
    b.add_argument("--limit", type=_positive_int, default=None, help="use the first N clips")
    b.add_argument(
        "--rows",
        default="ground_truth,shuffled,noise",
        help="comma-separated rows: ground_truth, shuffled, noise, codec (the model's codec reconstruction), "
        "model (the model's renders of the split's videos with the ground-truth CoT)",
    )
    b.add_argument("--model", default="default", help="model name under assets/models or a model folder")
    b.add_argument(
        "--cot", default="truth", choices=["truth", "planner"], help="model row: ground-truth CoT or the planner's"
    )
    b.add_argument("--planner", action="store_true", help="the planner's accuracy instead of audio rows")
    b.add_argument(
        "--rewards",
        action="store_true",
        help="mean reward-head scores per row instead of the metrics (extra rows: late, mirrored)",
    )
    _add_weights(b, "--rewards: weights of the total")
    b.add_argument("--seed", type=_nonneg_int, default=0, help="model row: seed of clip k is seed + k")
    b.add_argument("--steps", type=_positive_int, default=24, help="model row / --speed: sampling steps")
    b.add_argument("--cfg", type=_guidance, default=3.5, help="model row / --speed: guidance scale")
    b.add_argument("--rescale", type=float, default=0.0, help="model row: guidance rescale in 0 .. 1")
    _add_sampling_options(b, "model row / --speed: ")
    b.add_argument(
        "--candidates", type=_positive_int, default=1, help="model row: best of N seeds by the weighted reward"
    )
    b.add_argument(
        "--time-shift",
        type=float,
        default=None,
        metavar="S",
        help="instead of FoleyBench: render each clip with its Temporal block's times as written and moved by S "
        "seconds (same seed) and score both takes' onsets against the true and the moved events",
    )
    b.add_argument(
        "--speed",
        type=_positive_int,
        default=None,
        metavar="N",
        help="instead of FoleyBench: time N end-to-end renders of a 9 s clip (decode, encode, sample, decode, "
        "write) and report the median wall time and the peak memory",
    )
    b.add_argument(
        "--grpo-runs",
        default=None,
        metavar="FAST,FLOW",
        help="instead of FoleyBench: two GRPO run folders (Fast-GRPO, Flow-GRPO from the same start); reports the "
        "time Fast-GRPO takes to reach Flow-GRPO's final held-out reward",
    )
    b.add_argument("--figure", default=None, metavar="PNG", help="--grpo-runs: write the reward-time figure here")
    b.add_argument(
        "--smooth", type=_positive_int, default=1, help="--grpo-runs: trailing mean over this many evaluations"
    )
    b.set_defaults(func=cmd_bench)

    t = sub.add_parser("train", help="training commands")
    t.add_argument(
        "what",
        choices=["metrics", "codec", "features", "pretrain", "planner", "calibrate-planner", "grpo", *TRAIN_COMMANDS],
        help="metrics: the FoleyBench metric models; codec: the stereo audio codec (--steps, --batch, --codec "
        "for the output file); features: the generator's feature cache; "
        "pretrain: the generator and video encoder (builds missing features first); "
        "planner: the default planner (--out FILE.safetensors); calibrate-planner: its per-class reading "
        "thresholds on FoleyWorld val clips (--planner-file, --out); grpo: Fast-GRPO with the reward heads (--flow: "
        "Flow-GRPO; --dataset: on ingested videos); ingest: videos and tagged sounds -> dataset (--out); finetune: "
        "LoRA fine-tune on a dataset; dpo: Flow-DPO on preference pairs; blend: a tune at a strength "
        "(--tuned, --strength); house: the house library; measure: house "
        "FD / CLAP~ and FoleyBench of a tuned model; measure-dpo: pairs, DPO and the held-out reward",
    )
    t.add_argument(
        "--out", default=None, help="where the weights go (default assets/bench; pretrain: runs/pretrain_<cot mode>)"
    )
    t.add_argument("--clips", type=_positive_int, default=2400, help="training clips to generate")
    t.add_argument(
        "--house-per-class",
        type=_nonneg_int,
        default=0,
        help="metrics: add this many clips of each house class (a judge for train measure --judge; needs --out)",
    )
    t.add_argument("--epochs", type=_positive_int, default=10)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--preset", default="default", help="pretrain: generator preset (default, tiny, prismaudio)")
    t.add_argument("--cot-mode", default="decomposed", choices=["decomposed", "monolithic", "none"])
    t.add_argument("--steps", type=_positive_int, default=None, help="optimiser steps (codec 6000, pretrain 20000)")
    t.add_argument("--batch", type=_positive_int, default=None, help="clips per step (pretrain 16, planner 8)")
    t.add_argument("--lr", type=float, default=None, help="peak learning rate (codec 1e-3, pretrain 3e-4)")
    t.add_argument("--warmup", type=_positive_int, default=None, help="pretrain: warm-up steps (default 500)")
    t.add_argument("--cache", default=str(ROOT / "data" / "features" / "train"), help="feature cache folder")
    t.add_argument("--codec", default=None, help="codec file (default assets/models/default/codec.safetensors)")
    t.add_argument(
        "--cues", default=None, help="features: planner file whose frame-wise cues join the sync features (engine.sync)"
    )
    t.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True, help="pretrain: continue a run")
    t.add_argument("--mixed-precision", default=None, choices=["no", "bf16", "fp16"], help="pretrain (GPU): bf16")
    t.add_argument("--threads", type=_positive_int, default=None, help="pretrain: torch CPU threads")
    t.add_argument(
        "--stop-at", type=_positive_int, default=None, help="pretrain, planner: stop (checkpointed) at this step"
    )
    t.add_argument("--snapshot", default=None, help="pretrain: write the newest checkpoint's EMA models to this folder")
    t.add_argument("--device", default="cpu", help="planner: where the network trains (cpu, cuda)")
    t.add_argument("--workers", type=_positive_int, default=1, help="planner: processes rendering training clips")
    t.add_argument(
        "--init", default=None, help="planner: start from this planner file's weights; pretrain: this model folder's"
    )
    t.add_argument(
        "--recue",
        action="store_true",
        help="pretrain with --init: the cache's sync cues come from another planner network; the run re-learns them",
    )
    t.add_argument(
        "--timeline",
        action="store_true",
        help="pretrain (decomposed): the generator also reads the Temporal block's times onto the time axis",
    )
    t.add_argument(
        "--first-scene", type=_nonneg_int, default=0, help="planner, features: train scene index of the first clips"
    )
    t.add_argument(
        "--layout", default="frame", choices=["frame", "columns"], help="planner: network layout (engine.planner_net)"
    )
    t.add_argument("--channels", default=None, help="planner: widths of the stride-2 convolutions, e.g. 24,48,80")
    t.add_argument("--width", type=_positive_int, default=None, help="planner: feature width over time (128)")
    t.add_argument("--flip", action="store_true", help="planner: mirror half the training crops left to right")
    t.add_argument("--planner-file", default=None, help="calibrate-planner: planner file (default: the shipped one)")
    t.add_argument("--calibration-clips", type=_positive_int, default=300, help="calibrate-planner: val clips")
    t.add_argument("--event-beta", type=float, default=1.0, help="calibrate-planner: F-beta of events (> 1: recall)")
    t.add_argument(
        "--objective", default="exact", choices=["exact", "jaccard", "f2"], help="calibrate-planner: presence"
    )
    g = t.add_argument_group("grpo")
    g.add_argument(
        "--model", default="default", help="start model of grpo, ingest, finetune, dpo, blend, measure (name or folder)"
    )
    g.add_argument("--prompts", help="grpo: FoleyWorld split folder or folder of videos (default: FoleyWorld train)")
    g.add_argument("--prompt-clips", type=_positive_int, default=64, help="grpo: prompts used (FoleyWorld clips)")
    g.add_argument("--eval-prompts", help="grpo: held-out prompt folder (default: FoleyWorld val clips)")
    g.add_argument("--eval-clips", type=_positive_int, default=8, help="grpo: held-out prompts")
    g.add_argument("--duration", type=float, default=9.0, help="grpo: FoleyWorld clip seconds")
    g.add_argument("--iterations", type=_positive_int, default=200, help="grpo: iterations")
    g.add_argument("--group", type=_positive_int, default=8, help="grpo: takes per prompt")
    g.add_argument("--sample-steps", type=_positive_int, default=24, help="grpo: sampling steps T")
    g.add_argument("--window", type=_positive_int, default=2, help="grpo: SDE window width w (Fast-GRPO)")
    g.add_argument("--flow", action="store_true", help="grpo: Flow-GRPO (the SDE on every step)")
    _add_weights(g, "grpo: reward weights")
    g.add_argument("--per-reward-norm", action="store_true", help="grpo: normalise each reward within the group")
    g.add_argument(
        "--shared-prefix",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="grpo: the takes of a group share one start noise and the ODE steps before the window (the default; "
        "--no-shared-prefix: each take its own start)",
    )
    g.add_argument("--kl", type=float, default=0.04, help="grpo: KL weight")
    g.add_argument(
        "--lora-rank",
        type=_nonneg_int,
        default=None,
        help="grpo: LoRA rank (default 0: full fine-tuning); finetune/dpo: 16",
    )
    g.add_argument(
        "--lora-layers",
        default="all",
        choices=["all", "cross", "cross-kv"],
        help="finetune/dpo: the linears that get adapters (all attention and MLP, the cross-attention, its key-value)",
    )
    g.add_argument(
        "--eval-every",
        type=_nonneg_int,
        default=None,
        help="grpo: iterations between evaluations (10); finetune/dpo: steps (50)",
    )
    add_train_arguments(t)
    t.set_defaults(func=cmd_train)

    pl = sub.add_parser("plan", help="write the four CoT blocks of a video (JSON on stdout)")
    pl.add_argument("video", metavar="VIDEO", help="video file (its audio, if any, is not used)")
    pl.add_argument("--model", default="default", help="model whose planner to use (name or folder)")
    pl.add_argument("--seed", type=_nonneg_int, default=0, help="picks among equivalent phrasings")
    pl.add_argument(
        "--planner", default="default", choices=["default", "mllm"], help="the shipped planner or a multimodal LLM"
    )
    pl.add_argument("--mllm-model", help="--planner mllm: hub id or local folder (default Qwen2.5-VL-7B-Instruct)")
    pl.set_defaults(func=cmd_plan)

    sc = sub.add_parser("score", help="reward scores of a take against its video (JSON on stdout)")
    sc.add_argument("video", metavar="VIDEO", help="the video the take is for")
    sc.add_argument("audio", metavar="AUDIO", help="the take: WAV/FLAC (or a media file with an audio track)")
    sc.add_argument("--cot", help="CoT JSON file; default: the model's planner, else the generic fallback")
    _add_weights(sc, "weights of the total")
    sc.add_argument("--model", default="default", help="model whose planner writes the CoT when --cot is not given")
    sc.set_defaults(func=cmd_score)

    r = sub.add_parser("render", help="render stereo foley for videos")
    r.add_argument("videos", nargs="+", metavar="VIDEO", help="video files; outputs are named after each stem")
    r.add_argument("--out", required=True, help="folder for <stem>.wav, <stem>.cot.json (and <stem>.mp4)")
    r.add_argument(
        "--cot",
        help="CoT JSON file (semantic, temporal, aesthetic, spatial, optional negative); default: the planner's",
    )
    r.add_argument("--seed", type=_nonneg_int, default=None, help="noise seed (default: random, printed)")
    r.add_argument("--steps", type=_positive_int, default=24, help="sampling steps")
    r.add_argument("--cfg", type=_guidance, default=3.5, help="classifier-free guidance scale")
    _add_sampling_options(r, "")
    r.add_argument(
        "--candidates",
        type=_positive_int,
        default=1,
        help="best-of-N: render seeds seed .. seed + N - 1 and keep the best by the weighted reward",
    )
    _add_weights(r, "reward weights of best-of-N")
    r.add_argument("--mux", action="store_true", help="also write <stem>.mp4: the video stream copied + the audio")
    r.add_argument("--model", default="default", help="model name under assets/models or a model folder")
    r.set_defaults(func=cmd_render)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        from app.studio import launch_studio

        return launch_studio()
    from engine.errors import UserInputError

    try:
        return args.func(args)
    except (CliError, UserInputError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the CLI boundary: one line, never a traceback
        if os.environ.get("FOLEY_DEBUG"):
            raise
        print(f"error: {exc.__class__.__name__}: {exc} (set FOLEY_DEBUG=1 for details)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
