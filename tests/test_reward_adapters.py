"""Adapters of published reward models behind the reward-head protocol, tested offline with tiny randomly
initialised models saved to and loaded from a local folder: the scores equal a direct computation with the
model's own API, batches equal single takes, long takes are scored whole and deterministically."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from engine.cot import Cot
from engine.rewards import load_reward_heads
from engine.rewards.resample import mono_at
from engine.rewards.view import VideoView

COT = Cot("a dog barks twice", "two barks", "dry", "left")
SR = 44100


@pytest.fixture(scope="module")
def view() -> VideoView:
    return VideoView(3.0, 10.0, np.zeros((30, 50), np.float32))


def _takes(seconds: float, n: int = 2) -> np.ndarray:
    rng = np.random.default_rng(0)
    return (rng.standard_normal((n, round(seconds * SR), 2)) * 0.1).astype(np.float32)


# -------------------------------------------------------------------------------------------- CLAP


@pytest.fixture(scope="module")
def clap_dir(tmp_path_factory):
    """A tiny random CLAP (HTSAT audio tower, RoBERTa text tower) and its processor, saved locally."""
    from transformers import (
        ClapAudioConfig,
        ClapConfig,
        ClapFeatureExtractor,
        ClapModel,
        ClapProcessor,
        ClapTextConfig,
        RobertaTokenizer,
    )

    folder = tmp_path_factory.mktemp("clap")
    chars = [chr(c) for c in range(33, 127)] + ["\u0120"]  # byte-level BPE symbols of printable ASCII
    vocab = {t: i for i, t in enumerate(["<s>", "<pad>", "</s>", "<unk>", "<mask>"] + chars)}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = RobertaTokenizer(vocab_file=str(folder / "vocab.json"), merges_file=str(folder / "merges.txt"))
    text = ClapTextConfig(
        vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=64, projection_dim=16, pad_token_id=1,
    )  # fmt: skip
    audio = ClapAudioConfig(
        depths=[1, 1], num_attention_heads=[1, 2], patch_embeds_hidden_size=16, hidden_size=32, projection_dim=16,
        window_size=4,
    )  # fmt: skip
    torch.manual_seed(0)
    model = ClapModel(ClapConfig(text_config=text.to_dict(), audio_config=audio.to_dict(), projection_dim=16))
    model.save_pretrained(folder / "model")
    ClapProcessor(feature_extractor=ClapFeatureExtractor(), tokenizer=tokenizer).save_pretrained(folder / "model")
    return folder / "model"


def test_clap_head_equals_the_transformers_computation(clap_dir, view):
    from transformers import ClapModel, ClapProcessor

    from engine.rewards.clap import ClapHead

    head = ClapHead.load(str(clap_dir))
    takes = _takes(2.0)
    scores, info = head.score(takes, SR, view, COT)
    model, proc = ClapModel.from_pretrained(clap_dir).eval(), ClapProcessor.from_pretrained(clap_dir)
    with torch.no_grad():
        mono = [mono_at(t, SR, 48000) for t in takes]
        feats = proc(audio=mono, sampling_rate=48000, return_tensors="pt", truncation="rand_trunc", padding="repeatpad")
        a = model.get_audio_features(**feats).pooler_output  # (B, E) unit vectors
        t = model.get_text_features(**proc(text=[COT.semantic], return_tensors="pt")).pooler_output[0]
    np.testing.assert_allclose(scores, ((1 + a @ t) / 2).numpy(), atol=1e-5)
    assert all(0.0 <= s <= 1.0 for s in scores) and info["text"] == COT.semantic
    one, _ = head.score(takes[1], SR, view, COT)
    np.testing.assert_allclose(one, scores[1:], atol=1e-6)


def test_clap_scores_long_takes_whole_and_replaces_the_semantic_head(clap_dir, view):
    from engine.rewards.clap import ClapHead

    head = ClapHead.load(str(clap_dir))
    long = _takes(12.0, 1)  # two windows: 10 s + 2 s
    first, _ = head.score(long, SR, view, COT)
    again, _ = head.score(long, SR, view, COT)
    assert first[0] == again[0]
    heads = load_reward_heads().with_head(head)
    assert heads.heads["semantic"] is head and heads.dimensions == ("semantic", "temporal", "aesthetic", "spatial")


# ---------------------------------------------------------------------------------- Audiobox


@pytest.fixture
def tiny_audiobox(monkeypatch, tmp_path):
    """A tiny random Audiobox Aesthetics model (2-layer WavLM), saved with its own save_pretrained."""
    aes = pytest.importorskip("audiobox_aesthetics.model.aes")
    from audiobox_aesthetics.model.wavlm import WavLMConfig

    small = {k: v for k, v in aes.DEFAULT_AUDIO_CFG.__dict__.items()}
    small |= dict(encoder_layers=2, encoder_embed_dim=32, encoder_ffn_embed_dim=64, encoder_attention_heads=2)
    small |= dict(conv_feature_layers="[(32,10,5)] + [(32,3,2)] * 4 + [(32,2,2)] * 2", conv_pos=16)
    small |= dict(conv_pos_groups=4, num_buckets=32, max_distance=64)
    monkeypatch.setattr(aes, "DEFAULT_AUDIO_CFG", WavLMConfig(small))  # the package has no size option
    torch.manual_seed(0)
    transform = {a: {"mean": 5.0 + i, "std": 1.5} for i, a in enumerate(["CE", "CU", "PC", "PQ"])}
    model = aes.AesMultiOutput(nth_layer=3, target_transform=transform).eval()
    model.save_pretrained(tmp_path / "aes")
    return model, tmp_path / "aes"


def test_audiobox_head_equals_the_model_output(tiny_audiobox, view):
    from engine.rewards.audiobox import AudioboxAestheticsHead

    model, folder = tiny_audiobox
    assert (folder / "model.safetensors").is_file()
    head = AudioboxAestheticsHead.load(str(folder), axes=("PQ", "CE"))
    takes = _takes(1.5)
    scores, info = head.score(takes, SR, view, COT)
    wav = torch.from_numpy(np.stack([mono_at(t, SR, 16000) for t in takes]))[:, None]  # (B, 1, L)
    with torch.no_grad():
        preds = model({"wav": wav})
    pq = preds["PQ"].double().numpy() * 1.5 + 8.0  # the PQ axis: mean 5 + 3, std 1.5
    ce = preds["CE"].double().numpy() * 1.5 + 5.0
    np.testing.assert_allclose([it["PQ"] for it in info["items"]], pq, atol=1e-4)
    np.testing.assert_allclose(scores, np.clip(((pq + ce) / 2 - 1) / 9, 0, 1), atol=1e-5)
    with pytest.raises(Exception, match="axes"):
        AudioboxAestheticsHead(model, axes=("XX",))
