"""Prompts of RL: a video, its CoT, and the generator inputs that do not change during training.

Sources (`load_prompts`):

- a FoleyWorld split folder written by ``launch.py world`` (``index.json``, mp4 + json per clip): each
  clip's video with its ground-truth CoT;
- any other folder of videos: each video with ``<stem>.cot.json`` beside it when there is one, else the
  CoT the model's planner writes (the generic fallback CoT when the model has none, with a warning);
- `foleyworld_prompts` writes the first N clips of a split into a folder first (cached: an existing
  complete folder is reused).

Every prompt is decoded once (`engine.pipeline.prepare_video`) and its frozen inputs are computed once:
the video tokens of the bundle's frozen video encoder, the motion features, the encoded CoT blocks and
the negative prompt, exactly as `engine.pipeline.render` builds them, plus the reward heads' view.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from engine.bundle import ModelBundle
from engine.cot import Cot, load_cot, validate_cot
from engine.errors import UserInputError
from engine.generator import TextBlock
from engine.pipeline import FALLBACK_COT, prepare_video
from engine.prepared import PreparedVideo
from engine.rewards import VideoView, view_of_prepared

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v")


@dataclass(eq=False)
class Prompt:
    """One condition c of the policy, with everything that stays fixed while the generator trains."""

    name: str  # the video's stem
    cot: Cot  # the four blocks (and the negative prompt)
    prepared: PreparedVideo  # decoded video: duration, motion, frames
    view: VideoView  # what the reward heads see of the video
    video_tokens: torch.Tensor  # (1, F, Dv) frozen video-encoder tokens of the whole clip
    sync: torch.Tensor  # (1, T, Ds) motion features at the latent rate
    text: list[TextBlock]  # the four encoded CoT blocks, each (states (1, L, 384), mask (1, L))
    negative: TextBlock | None  # encoded negative prompt, or None
    timeline: torch.Tensor | None = None  # (1, T, K) the Temporal block's track, for a model that takes one

    @property
    def n_latent(self) -> int:
        """T, the latent frames of the clip."""
        return self.prepared.n_latent


@torch.no_grad()
def make_prompt(video: Path, cot: Cot | dict, bundle: ModelBundle) -> Prompt:
    """Decode ``video`` and compute its frozen inputs; `UserInputError` when it is longer than one window."""
    prepared = prepare_video(video, bundle)
    if prepared.n_latent > bundle.max_frames:
        raise UserInputError(
            f"{video.name} lasts {prepared.duration:.1f} s, longer than the generator's window "
            f"({bundle.max_frames} latent frames); cut it for RL"
        )
    cot = validate_cot(cot)
    text = bundle.encode_cot(cot)
    tokens = bundle.video_tokens(prepared, 0, prepared.n_latent)  # (1, F, Dv)
    sync = torch.tensor(prepared.sync, device=bundle.device)[None]  # (1, T, Ds)
    timeline = bundle.timeline(cot, 0, prepared.n_latent)
    view = view_of_prepared(prepared)
    return Prompt(video.stem, cot, prepared, view, tokens, sync, text.text, text.negative, timeline)


def _folder_cots(folder: Path, videos: list[Path], planner: Callable[[Path], Cot] | None) -> list[Cot]:
    """The CoT of each video of a plain folder: ``<stem>.cot.json``, else the planner's, else the fallback."""
    cots, fallback = [], 0
    for v in videos:
        side = v.with_name(f"{v.stem}.cot.json")
        if side.is_file():
            cots.append(load_cot(side))
        elif planner is not None:
            cots.append(planner(v))
        else:
            cots.append(FALLBACK_COT)
            fallback += 1
    if fallback:
        warnings.warn(
            f"{fallback} video(s) in {folder} have no CoT file and the model no planner: fallback CoT", stacklevel=3
        )
    return cots


def load_prompts(
    folder: str | Path,
    bundle: ModelBundle,
    limit: int | None = None,
    planner: Callable[[Path], Cot] | None = None,
) -> list[Prompt]:
    """The prompts of ``folder`` (a FoleyWorld split, or videos), the first ``limit`` of them."""
    root = Path(folder)
    if not root.is_dir():
        raise UserInputError(f"prompt folder not found: {root}")
    index = root / "index.json"
    if index.is_file():
        names = json.loads(index.read_text())["clips"][:limit]
        metas = [json.loads((root / f"{n}.json").read_text()) for n in names]
        missing = [n for n in names if not (root / f"{n}.mp4").is_file()]
        if missing:
            raise UserInputError(f"{root} has no video for {missing[0]}; write the split without --no-video")
        pairs = [(root / f"{n}.mp4", m["cot"]) for n, m in zip(names, metas)]
    else:
        videos = sorted(p for p in root.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)[:limit]
        pairs = list(zip(videos, _folder_cots(root, videos, planner)))
    if not pairs:
        raise UserInputError(f"no videos in {root}")
    return [make_prompt(v, c, bundle) for v, c in pairs]


def foleyworld_prompts(
    folder: str | Path, split: str, count: int, duration: float, bundle: ModelBundle
) -> list[Prompt]:
    """The first ``count`` clips of a FoleyWorld ``split`` (``duration`` s) as prompts, written to
    ``folder`` first unless a complete folder with at least as many clips of that length is there."""
    from trainer.foleyworld.scene import WorldConfig
    from trainer.foleyworld.splits import write_split

    root = Path(folder)
    index = root / "index.json"
    have = json.loads(index.read_text()) if index.is_file() else {}
    fresh = have.get("split") == split and len(have.get("clips", [])) >= count
    if fresh:
        first = json.loads((root / f"{have['clips'][0]}.json").read_text())
        fresh = abs(first["duration"] - duration) < 1e-9
    if not fresh:
        write_split(split, root, count, WorldConfig(duration=duration))
    return load_prompts(root, bundle, limit=count)
