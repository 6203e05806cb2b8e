"""Training of the FoleyBench metric models (``python launch.py train metrics``).

Data: FoleyWorld ``train`` clips (audio only) for training, ``val`` clips for the reported accuracy.
Three models, one architecture (`engine.bench.models.AudioNet`):
- classifier: multi-label sound-event classifier (binary cross-entropy over the 16 classes);
- contrastive: audio tower + projection of frozen MiniLM embeddings of the Semantic block (InfoNCE);
- quality: clean render (1) against the same render degraded (0) by `trainer.degrade`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from engine.bench.features import log_mel
from engine.bench.models import AudioNet, AudioNetConfig, ContrastiveModel, save_model
from engine.text_encoder import encode_sentences

from .degrade import degrade
from .foleyworld.classes import CLASS_NAMES
from .foleyworld.splits import make_clip


def _clip_features(job: tuple[str, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """Worker: (split, index) -> (clean log-mel, degraded log-mel, multi-hot labels, semantic text)."""
    split, index = job
    clip = make_clip(split, index)
    sr = clip.scene.config.sample_rate
    audio = clip.audio.audio
    bad, _ = degrade(audio, sr, np.random.default_rng([clip.scene.seed, 7]))
    labels = np.zeros(len(CLASS_NAMES), dtype=np.float32)
    for c in clip.scene.classes:
        labels[CLASS_NAMES.index(c)] = 1.0
    return log_mel(audio, sr), log_mel(bad, sr), labels, clip.cot.semantic


def build_dataset(split: str, count: int, workers: int = 2, progress: Callable[[int, int], None] | None = None) -> dict:
    """Features of ``count`` clips of ``split``, computed in ``workers`` processes."""
    jobs = [(split, i) for i in range(count)]
    rows = []
    with get_context("spawn").Pool(workers) as pool:
        for k, row in enumerate(pool.imap(_clip_features, jobs, chunksize=8)):
            rows.append(row)
            if progress:
                progress(k + 1, count)
    return {
        "clean": np.stack([r[0] for r in rows]),
        "bad": np.stack([r[1] for r in rows]),
        "labels": np.stack([r[2] for r in rows]),
        "text": [r[3] for r in rows],
    }


def _batches(n: int, bs: int, rng: np.random.Generator):
    order = rng.permutation(n)
    for i in range(0, n, bs):
        yield order[i : i + bs]


def _fit(
    model: torch.nn.Module, loss_fn: Callable, n: int, epochs: int, seed: int, lr: float = 2e-3, bs: int = 32
) -> None:
    """Adam with cosine decay over ``epochs`` passes of ``n`` examples."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * math.ceil(n / bs)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    rng = np.random.default_rng(seed)
    model.train()
    for _ in range(epochs):
        for idx in _batches(n, bs, rng):
            loss = loss_fn(idx)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    model.eval()


def _set_norm(net: AudioNet, mel: np.ndarray) -> None:
    net.mean.fill_(float(mel.mean()))
    net.std.fill_(float(mel.std()))


def train_classifier(data: dict, epochs: int, seed: int) -> AudioNet:
    torch.manual_seed(seed)
    net = AudioNet(config=AudioNetConfig(n_out=len(CLASS_NAMES)))
    _set_norm(net, data["clean"])
    x, y = torch.from_numpy(data["clean"]), torch.from_numpy(data["labels"])
    _fit(net, lambda i: F.binary_cross_entropy_with_logits(net(x[i])[1], y[i]), len(x), epochs, seed)
    return net


def train_quality(data: dict, epochs: int, seed: int) -> AudioNet:
    torch.manual_seed(seed + 1)
    net = AudioNet(config=AudioNetConfig(n_out=1))
    _set_norm(net, data["clean"])
    x = torch.from_numpy(np.concatenate([data["clean"], data["bad"]]))
    y = torch.cat([torch.ones(len(data["clean"])), torch.zeros(len(data["bad"]))])
    _fit(net, lambda i: F.binary_cross_entropy_with_logits(net(x[i])[1][:, 0], y[i]), len(x), epochs, seed)
    return net


def train_contrastive(data: dict, text_emb: torch.Tensor, epochs: int, seed: int) -> ContrastiveModel:
    torch.manual_seed(seed + 2)
    model = ContrastiveModel(config=AudioNetConfig(n_out=128))
    _set_norm(model.audio, data["clean"])
    x = torch.from_numpy(data["clean"])

    def loss(i: np.ndarray) -> torch.Tensor:
        a, t = model.audio_embed(x[i]), model.text_embed(text_emb[i])
        logits = model.logit_scale.clamp(max=4.6).exp() * a @ t.T
        target = torch.arange(len(i))
        return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2

    _fit(model, loss, len(x), epochs, seed, bs=64)
    return model


@torch.no_grad()
def evaluate(
    classifier: AudioNet, quality: AudioNet, contrastive: ContrastiveModel, val: dict, val_text: torch.Tensor
) -> dict:
    """Held-out figures: class recall@k, quality AUC-style accuracy, text retrieval and paired cosine."""
    x = torch.from_numpy(val["clean"])
    probs = torch.sigmoid(classifier(x)[1]).numpy()
    k = val["labels"].sum(1).astype(int)
    topk = [set(np.argsort(-p)[:kk]) for p, kk in zip(probs, k)]
    recall = float(np.mean([len(s & set(np.flatnonzero(lab))) / kk for s, lab, kk in zip(topk, val["labels"], k)]))
    q_clean = torch.sigmoid(quality(x)[1][:, 0])
    q_bad = torch.sigmoid(quality(torch.from_numpy(val["bad"]))[1][:, 0])
    a, t = contrastive.audio_embed(x), contrastive.text_embed(val_text)
    sims = a @ t.T
    paired = sims.diag()
    shuffled = sims.roll(1, dims=1).diag()
    return {
        "class_recall_at_k": recall,
        "quality_accuracy": float(((q_clean > 0.5).float().mean() + (q_bad < 0.5).float().mean()) / 2),
        "clap_paired": float(paired.mean()),
        "clap_shuffled": float(shuffled.mean()),
        "clap_retrieval_top1": float((sims.argmax(1) == torch.arange(len(x))).float().mean()),
    }


def train_metric_models(
    out_dir: Path,
    n_train: int = 3000,
    n_val: int = 300,
    epochs: int = 12,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Generate data, train the three models, evaluate on val, save under ``out_dir``."""
    t0 = time.perf_counter()
    train = build_dataset("train", n_train, progress=progress)
    val = build_dataset("val", n_val)
    t_data = time.perf_counter() - t0
    text_train, text_val = encode_sentences(train["text"]), encode_sentences(val["text"])
    torch.set_num_threads(max(1, torch.get_num_threads()))
    classifier = train_classifier(train, epochs, seed)
    quality = train_quality(train, max(2, epochs // 2), seed)
    contrastive = train_contrastive(train, text_train, epochs, seed)
    report = evaluate(classifier, quality, contrastive, val, text_val)
    report.update(
        {
            "n_train": n_train,
            "n_val": n_val,
            "epochs": epochs,
            "data_seconds": round(t_data, 1),
            "total_seconds": round(time.perf_counter() - t0, 1),
        }
    )
    out_dir = Path(out_dir)
    save_model(
        classifier, out_dir / "classifier.safetensors", "classifier", classifier.config, {"classes": CLASS_NAMES}
    )
    save_model(quality, out_dir / "quality.safetensors", "quality", quality.config)
    save_model(contrastive, out_dir / "contrastive.safetensors", "contrastive", contrastive.audio.config)
    return report
