"""The learned FoleyBench metric models: sound-event classifier, audio-text contrastive model (our CLAP
analogue) and quality predictor. Trained by ``python launch.py train metrics`` (see
``trainer/metric_models.py``) and shipped as safetensors under ``assets/bench/``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from engine.atomic import atomic_path
from engine.bench.mel import N_MELS


@dataclass
class AudioNetConfig:
    """A small CNN over log-mel spectrograms with global pooling (any clip length)."""

    channels: tuple[int, ...] = (8, 16, 32, 64)  # conv widths; each block halves frequency and time
    embed_dim: int = 128  # width of the pooled embedding
    n_out: int = 16  # outputs of the head (classes, 1 for quality, projection width for contrastive)

    @property
    def freq_after(self) -> int:
        """Mel bins left after the pooling of every block."""
        return N_MELS // 2 ** len(self.channels)


class AudioNet(nn.Module):
    """log-mel (B, N_MELS, T) -> embedding (B, embed_dim) and head output (B, n_out)."""

    def __init__(self, *, config: AudioNetConfig) -> None:
        super().__init__()
        self.config = config
        blocks, c_in = [], 1
        for c in config.channels:
            blocks += [nn.Conv2d(c_in, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(), nn.MaxPool2d(2)]
            c_in = c
        self.trunk = nn.Sequential(*blocks)
        self.embed = nn.Linear(2 * c_in * config.freq_after, config.embed_dim)
        self.head = nn.Linear(config.embed_dim, config.n_out)
        # Input normalisation constants (log10 power): set from training data statistics.
        self.register_buffer("mean", torch.tensor(-3.0))
        self.register_buffer("std", torch.tensor(1.5))

    def embedding(self, mel: torch.Tensor) -> torch.Tensor:
        """(B, N_MELS, T) -> (B, embed_dim)."""
        if mel.ndim != 3 or mel.shape[1] != N_MELS:
            raise ValueError(f"expected (B, {N_MELS}, T) log-mel, got {mel.shape=}")
        h = self.trunk(((mel - self.mean) / self.std).unsqueeze(1))  # (B, C, F', T')
        h = h.flatten(1, 2)  # (B, C*F', T')
        pooled = torch.cat([h.mean(-1), h.amax(-1)], dim=1)  # (B, 2*C*F')
        return F.relu(self.embed(pooled))

    def forward(self, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        emb = self.embedding(mel)
        return emb, self.head(emb)


class ContrastiveModel(nn.Module):
    """Audio tower (AudioNet) and a text projection of frozen MiniLM sentence embeddings into one space."""

    def __init__(self, *, config: AudioNetConfig, text_dim: int = 384) -> None:
        super().__init__()
        self.audio = AudioNet(config=config)
        self.text = nn.Sequential(nn.Linear(text_dim, 256), nn.ReLU(), nn.Linear(256, config.n_out))
        self.logit_scale = nn.Parameter(torch.tensor(2.66))  # exp(2.66) ~ 1/0.07, CLIP's initial temperature

    def audio_embed(self, mel: torch.Tensor) -> torch.Tensor:
        """(B, N_MELS, T) -> (B, n_out) unit vectors."""
        return F.normalize(self.audio(mel)[1], dim=-1)

    def text_embed(self, sent: torch.Tensor) -> torch.Tensor:
        """(B, 384) MiniLM sentence embeddings -> (B, n_out) unit vectors."""
        return F.normalize(self.text(sent), dim=-1)


def save_model(model: nn.Module, path: Path, kind: str, config: AudioNetConfig, extra: dict | None = None) -> None:
    """Write weights and config to one safetensors file (write, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"kind": kind, "config": json.dumps(asdict(config)), "extra": json.dumps(extra or {})}
    with atomic_path(path) as tmp:
        save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(tmp), metadata=meta)


def load_model(path: Path) -> tuple[nn.Module, dict]:
    """Read a model written by `save_model`; returns (model in eval mode, extra info)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    cfg_dict = json.loads(meta["config"])
    cfg = AudioNetConfig(**{**cfg_dict, "channels": tuple(cfg_dict["channels"])})
    model = ContrastiveModel(config=cfg) if meta["kind"] == "contrastive" else AudioNet(config=cfg)
    model.load_state_dict(load_file(str(path)))
    return model.eval(), json.loads(meta["extra"])


ASSETS = Path(__file__).resolve().parents[2] / "assets" / "bench"


@dataclass
class MetricModels:
    """The three learned metric models and the class order of the classifier."""

    classifier: AudioNet
    contrastive: ContrastiveModel
    quality: AudioNet
    classes: list[str]


def load_metric_models(folder: Path = ASSETS) -> MetricModels:
    """Load the shipped metric models (train them with ``python launch.py train metrics``)."""
    missing = [n for n in ("classifier", "contrastive", "quality") if not (folder / f"{n}.safetensors").is_file()]
    if missing:
        raise FileNotFoundError(
            f"FoleyBench metric models missing in {folder}: {', '.join(missing)}; "
            "train them with: python launch.py train metrics"
        )
    clf, extra = load_model(folder / "classifier.safetensors")
    con, _ = load_model(folder / "contrastive.safetensors")
    qual, _ = load_model(folder / "quality.safetensors")
    return MetricModels(clf, con, qual, extra["classes"])
