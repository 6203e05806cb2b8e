"""What every command of ``launch.py`` shares: the one-line error contract (`CliError`, `OneLineParser`),
argument types, the --weights and sampling options, progress printers on stderr and JSON output."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path

from engine.errors import UserInputError

ROOT = Path(__file__).resolve().parents[2]  # the repository: default data, run and asset folders live under it
DEFAULT_CODEC = ROOT / "assets" / "models" / "default" / "codec.safetensors"  # the shipped codec


class CliError(UserInputError):
    """Bad command-line input; printed as one line (exit code 2)."""


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports usage errors in one line (the CLI contract), exit code 2.

    ``rewrite``: a function applied to this parser's own argument list before parsing (old spellings of a
    command, e.g. ``bench --speed 5`` -> ``bench speed --speed 5``)."""

    def __init__(self, *args, rewrite: Callable[[list[str]], list[str]] | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.rewrite = rewrite

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        if self.rewrite is not None:
            args = self.rewrite(list(sys.argv[1:] if args is None else args))
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"error: {self.prog}: {message}\n")


# ------------------------------------------------------------------------------------------ argument types


def whole_number(minimum: int, wanted: str) -> Callable[[str], int]:
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


positive_int = whole_number(1, "a positive number")
nonneg_int = whole_number(0, "zero or more")


def int_list(text: str) -> tuple[int, ...]:
    """An argparse type: "24,48,80" -> (24, 48, 80), every item a positive whole number."""
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = ()
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive whole numbers separated by commas, got {text!r}")
    return values


def guidance(text: str) -> float:
    """A guidance scale: a finite number >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text}")
    return value


def video_cfg(text: str) -> float | str:
    """--video-cfg: a guidance scale, or "same" (the --cfg scale: plain guidance)."""
    return "same" if text == "same" else guidance(text)


def shift(text: str) -> float:
    """--shift: a finite number above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value < float("inf"):  # NaN fails too
        raise argparse.ArgumentTypeError(f"expected a finite number above 0, got {text}")
    return value


def interval(text: str) -> tuple[float, float]:
    """LO:HI, the noise levels (1 = noise, 0 = data) at which guidance applies."""
    try:
        lo, hi = map(float, text.split(":"))  # not two numbers: ValueError
    except ValueError:
        lo = hi = float("nan")
    if not 0.0 <= lo <= hi <= 1.0:
        raise argparse.ArgumentTypeError(f"expected LO:HI with 0 <= LO <= HI <= 1, got {text!r}")
    return lo, hi


def weights(text: str) -> dict[str, float]:
    """``semantic=1,temporal=0.6`` -> weights of the four reward dimensions (left out = 0), all >= 0."""
    from engine.rewards.weighting import parse_weights

    try:
        return parse_weights(text)
    except UserInputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_weights(parser, what: str) -> None:
    """The --weights option (the four reward dimensions, PrismAudio's weights `DEFAULT_WEIGHTS` by default)."""
    from engine.rewards import DEFAULT_WEIGHTS

    default = ",".join(f"{k}={v:g}" for k, v in DEFAULT_WEIGHTS.items())
    parser.add_argument("--weights", type=weights, default=default, help=f"{what}, e.g. {default} (left out = 0)")


def add_sampling_options(parser, what: str) -> None:
    """--guidance-interval, --video-cfg, --shift, --no-declick and --no-gate (left out: `RenderSettings`' defaults,
    the studio's)."""
    parser.add_argument(
        "--guidance-interval",
        type=interval,
        default=None,
        metavar="LO:HI",
        help=f"{what}guide only at noise levels LO <= t <= HI (1 = noise, 0 = data), the conditional model "
        "elsewhere; 0:1 guides every step (default: the studio's, see docs/RESULTS.md)",
    )
    parser.add_argument(
        "--video-cfg",
        type=video_cfg,
        default=None,
        metavar="S",
        help=f"{what}guidance scale of the picture and motion on top of the text's --cfg; 'same' for plain "
        "guidance at --cfg (default: the studio's, see docs/RESULTS.md)",
    )
    parser.add_argument(
        "--shift",
        type=shift,
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


def sampling_kw(args: argparse.Namespace) -> dict:
    """RenderSettings keywords for --guidance-interval, --video-cfg, --shift, --no-declick and --no-gate: nothing for
    what was left out."""
    kw = {} if args.guidance_interval is None else {"guidance_interval": args.guidance_interval}
    if args.shift is not None:
        kw["shift"] = args.shift
    if args.video_cfg is not None:
        kw["video_cfg"] = None if args.video_cfg == "same" else args.video_cfg
    return kw | ({"declick": False} if args.no_declick else {}) | ({"gate": False} if args.no_gate else {})


# ---------------------------------------------------------------------------------------------- output


def progress(label: str) -> Callable[[int, int], None]:
    """Progress on stderr: one updating line on a terminal, else a line every 5 %."""
    tty = sys.stderr.isatty()

    def show(done: int, total: int) -> None:
        if tty:
            print(f"\r{label}: {done}/{total}", end="\n" if done == total else "", file=sys.stderr, flush=True)
        elif done == total or done % max(1, total // 20) == 0:
            print(f"{label}: {done}/{total}", file=sys.stderr, flush=True)

    return show


def json_safe(obj):
    """``obj`` with non-finite floats as None (JSON has no inf or NaN)."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return None if isinstance(obj, float) and not math.isfinite(obj) else obj


def print_json(obj) -> int:
    """Print ``obj`` as one JSON line on stdout; the exit code 0 of a command that succeeded."""
    print(json.dumps(obj), flush=True)
    return 0


# ----------------------------------------------------------------------------------------------- input


def read_take(path: Path):
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
