"""The model family interface (engine.family): the shipped bundle is one, and a family with conditions and a
codec of its own renders through the same pipeline without any caller knowing it (an analytic stand-in here:
its velocity is v = x, so every Euler step scales the latent by (1 + dt) and the take is known exactly)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.cot import Cot
from engine.family import CotConditions, Finish, Guidance, ModelFamily
from engine.pipeline import RenderSettings, render, render_takes
from engine.prepared import PreparedVideo, decode_prepared
from tests.bundles import tiny_bundle
from tests.test_video_io import _video

COT = Cot(semantic="a hum", temporal="all along", aesthetic="clean", spatial="centre")


class ScaleFamily:
    """A family whose conditions are a dict, whose velocity is the latent itself and whose codec holds each
    latent frame for ``hop`` samples on both channels."""

    name, trainable, sample_rate, hop = "scale", frozenset(), 8000, 200
    latent_rate, max_frames, device = sample_rate / hop, 10_000, torch.device("cpu")

    def __init__(self) -> None:
        self.calls: list[str] = []

    def prepare(self, path) -> PreparedVideo:
        return decode_prepared(path, rate=4.0, size=16, sample_rate=self.sample_rate, hop=self.hop, planner=None)

    def encode_cot(self, cot: Cot) -> CotConditions:
        self.calls.append("encode_cot")
        return CotConditions(cot, [cot.semantic], None)

    def window_conditions(self, prepared, text, start, length):
        self.calls.append("window_conditions")
        return {"text": text.text, "frames": (start, length)}, {"text": []}

    def guided_velocity(self, cond, uncond, guidance: Guidance, batch: int = 1):
        return lambda x, t: x

    def noise(self, seed: int, length: int) -> torch.Tensor:
        return torch.full((1, 1, length), float(seed + 1))

    def encode_audio(self, audio: torch.Tensor) -> torch.Tensor:
        return audio[:, :1, :: self.hop]

    def decode_latent(self, z: torch.Tensor, n_samples: int) -> torch.Tensor:
        return z.repeat_interleave(self.hop, dim=2)[:, :, :n_samples].expand(-1, 2, -1)

    def decode_window(self, z, prepared, start, length, finish: Finish) -> np.ndarray:
        n = min(length * self.hop, prepared.n_samples - start * self.hop)
        return self.decode_latent(z, n).transpose(1, 2).numpy()


def test_the_shipped_bundle_is_a_model_family():
    assert isinstance(tiny_bundle(), ModelFamily)
    assert isinstance(ScaleFamily(), ModelFamily)


def test_another_family_renders_through_the_same_pipeline(tmp_path):
    _video(tmp_path / "v.mp4", 25.0, 30)  # 1.2 s
    family = ScaleFamily()
    prepared = family.prepare(tmp_path / "v.mp4")
    settings = RenderSettings(seed=1, steps=4)
    take = render(prepared, COT, family, settings)
    assert take.shape == (prepared.n_samples, 2) == (round(1.2 * 8000), 2)
    np.testing.assert_allclose(take, 2.0 * 0.75**4 * np.ones_like(take), rtol=1e-6)  # (seed + 1) (1 - 1/4)^4
    family.calls.clear()
    takes = render_takes(prepared, COT, family, settings, [0, 2])
    assert family.calls == ["encode_cot", "window_conditions"]  # one encoding, one window's conditions
    assert [float(t[0, 0]) for t in takes] == pytest.approx([0.75**4, 3 * 0.75**4])
