"""A tiny model bundle for tests: every part real and small, weights perturbed so it makes sound."""

from __future__ import annotations

from dataclasses import replace

import torch

from engine.bundle import ModelBundle
from engine.codec import CODEC_PRESETS, Codec
from engine.generator import GENERATOR_PRESETS, build_generator
from engine.planner.network import PlannerNet
from engine.sync import sync_dim
from engine.video_encoder import build_video_encoder


def tiny_bundle(planner: PlannerNet | None = None) -> ModelBundle:
    """Tiny codec, generator (max 256 latent frames = 11.9 s) and video encoder, weights perturbed so the
    zero-initialised output layers produce sound; with ``planner`` the generator reads its cues too."""
    torch.manual_seed(0)
    codec = Codec(config=CODEC_PRESETS["tiny"])
    encoder = build_video_encoder("tiny")
    cfg = replace(
        GENERATOR_PRESETS["tiny"],
        latent_dim=codec.config.latent_dim,
        video_dim=encoder.config.width,
        sync_dim=sync_dim(planner),
        max_frames=256,
    )
    generator = build_generator(cfg)
    with torch.no_grad():
        for p in [*generator.parameters(), *codec.parameters()]:
            p.add_(torch.randn_like(p) * 0.1)
    if planner is None:
        return ModelBundle(codec, generator, encoder, name="tiny-test")
    return ModelBundle(codec, generator, encoder, name="cues-test", planner=planner, sync_cues=True)


def tiny_planner(seed: int = 0) -> PlannerNet:
    """A small planner network on random weights (seeded): its cues exercise the sync-feature plumbing."""
    import torch

    from engine.planner.network import PlannerConfig
    from trainer.planner.train import planner_classes

    torch.manual_seed(seed)
    return PlannerNet(config=PlannerConfig(classes=planner_classes(), channels=(8, 8, 16), width=16)).eval()
