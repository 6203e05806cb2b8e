"""``launch.py codec AUDIO --out WAV [--model NAME]``: a sound encoded and decoded through a model's codec (what
the generator's latents can hold), written as a 24-bit WAV at the codec's rate; one JSON line on stdout."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from engine.commands.common import CliError, print_json, read_take


def build(parser) -> None:
    parser.add_argument("audio", metavar="AUDIO", help="WAV/FLAC (or a media file with an audio track)")
    parser.add_argument("--out", required=True, metavar="WAV", help="the reconstruction (stereo WAV)")
    parser.add_argument("--model", default="default", help="model whose codec to use (name or folder)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from engine.bundle import load_bundle
    from engine.export import resample
    from engine.media import write_wav

    start = time.perf_counter()
    out = Path(args.out)
    if out.is_dir() or out.suffix.lower() != ".wav":
        raise CliError(f"--out must name a .wav file, got {out}")
    audio, sr = read_take(Path(args.audio))
    bundle = load_bundle(args.model)
    rate = bundle.sample_rate
    audio = resample(audio, sr, rate) if sr != rate else audio  # (N, 2) at the codec's rate
    x = torch.from_numpy(audio.T.copy()).float()[None]  # (1, 2, N)
    with torch.no_grad():
        z = bundle.encode_audio(x)  # (1, C, T)
        y = bundle.decode_latent(z, x.shape[-1])[0].T.numpy()  # (N, 2)
    write_wav(out, y.clip(-1.0, 1.0), rate, subtype="PCM_24")
    line = {"audio": str(args.audio), "out": str(out), "model": bundle.name, "sample_rate": rate}
    line |= {"samples": len(y), "latent": list(z.shape[1:]), "seconds": round(time.perf_counter() - start, 3)}
    return print_json(line)
