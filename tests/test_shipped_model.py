"""The shipped default bundle: it loads offline, fits the size budget and renders a FoleyWorld clip
deterministically, at a sane level."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.bundle import MODELS_DIR, load_bundle
from engine.pipeline import RenderSettings, prepare_video, render

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("one_thread")


def test_shipped_weights_fit_the_budget():
    weights = [p for p in (ROOT / "assets").rglob("*.safetensors")]
    assert len(weights) >= 6  # three metric models, codec, generator, video encoder
    assert sum(p.stat().st_size for p in weights) <= 40 * 1024 * 1024


def test_default_bundle_renders_a_clip(tmp_path):
    from engine.media import write_mp4
    from trainer.foleyworld.scene import WorldConfig
    from trainer.foleyworld.splits import make_clip
    from trainer.foleyworld.video import render_frames

    bundle = load_bundle("default")
    assert (MODELS_DIR / "default" / "model.json").is_file() and bundle.cot_mode == "decomposed"
    clip = make_clip("val", 3, WorldConfig(duration=4.0))
    cfg = clip.scene.config
    write_mp4(tmp_path / "v.mp4", render_frames(clip.scene), cfg.fps, None, cfg.sample_rate)
    prepared = prepare_video(tmp_path / "v.mp4", bundle)
    audio = render(prepared, clip.cot, bundle, RenderSettings(seed=1, steps=8, cfg=3.5))
    assert audio.shape == (prepared.n_samples, 2) and np.isfinite(audio).all()
    rms = np.sqrt(np.mean(audio**2))
    assert 1e-3 < rms < 0.5  # it makes sound, not silence or noise at full scale
    again = render(prepared, clip.cot, bundle, RenderSettings(seed=1, steps=8, cfg=3.5))
    assert np.array_equal(audio, again)
