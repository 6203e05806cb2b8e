"""Flow-DPO: learning the designer's taste from starred against rejected takes of the same clip.

The ReasonAudio formulation (REFERENCE "Preference post-training"; `trainer.losses.flow_dpo_loss`): for a
pair (winner w, loser l) under one condition c (the clip's video and the CoT both takes were rendered
from), both latents are noised with the same t and the same noise, and

    Delta = ||v* - v_theta(x_t, t, c)||^2 - ||v* - v_ref(x_t, t, c)||^2,
    loss  = -log sigmoid(-(beta / 2) (Delta_w - Delta_l)),

with ``v*`` the flow-matching target and the reference frozen: the start model, which with LoRA is the
same network with its adapters disabled. No condition dropout (the pair is about this condition).
Errors are means over the latent elements, as in `trainer.losses.flow_matching_loss`, so ``beta`` is of
the order of Diffusion-DPO's (2000-5000 with mean errors).

Pairs come from a JSON file (`read_pairs`: the studio writes one from its store; any script can) and are
cached once per run in ``out/pairs/`` (codec latents of both takes, the clip's frames and sync features
per window, `trainer.ingest`'s window cuts). The held-out part is a seeded choice of whole clips; its
DPO loss (fixed t and noise), mean margin and preference accuracy are evaluated during training.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from engine.atomic import atomic_path, write_text
from engine.bundle import ModelBundle
from engine.cot import Cot, validate_cot
from engine.errors import UserInputError
from engine.generator import concat_conditions
from engine.pipeline import prepare_video
from engine.timeline import timeline_track
from trainer.dataset import WindowCollate, cot_token_states, held_out_split, timeline_rate
from trainer.finetune import batch_conditions, eval_times
from trainer.ingest import (
    IngestConfig,
    binding,
    encode_window,
    fit_length,
    read_audio_file,
    video_windows,
    window_frames,
    window_starts,
)
from trainer.lora.adapters import network
from trainer.lora.method import LoraTrainConfig, train_lora
from trainer.losses import flow_dpo_loss, flow_matching_loss, logit_normal_times

PAIRS_FORMAT = "foley-pairs/1"


@dataclass(frozen=True)
class PreferencePair:
    """Two takes of one clip under one CoT, the first preferred."""

    video: str  # the clip's video file
    cot: dict  # the CoT both takes were rendered from
    winner: str  # audio file of the starred take
    loser: str  # audio file of the rejected take
    group: str = ""  # what the held-out split keeps together (the clip; default: the video)


def write_pairs(path: str | os.PathLike, pairs: list[PreferencePair]) -> Path:
    """The pairs file `read_pairs` reads (written atomically)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [{"video": p.video, "cot": p.cot, "winner": p.winner, "loser": p.loser, "group": p.group} for p in pairs]
    write_text(path, json.dumps({"format": PAIRS_FORMAT, "pairs": rows}, indent=1))
    return path


def read_pairs(path: str | os.PathLike) -> list[PreferencePair]:
    """The pairs of a file ``{"format": "foley-pairs/1", "pairs": [{video, cot, winner, loser, group?}]}``."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserInputError(f"{p} is not a readable pairs file ({exc.__class__.__name__})") from None
    if not isinstance(data, dict) or data.get("format") != PAIRS_FORMAT:
        raise UserInputError(f"{p} is not a pairs file (expected format {PAIRS_FORMAT!r})")
    out = []
    for k, row in enumerate(data.get("pairs", [])):
        missing = [key for key in ("video", "cot", "winner", "loser") if key not in row]
        if missing:
            raise UserInputError(f"pair {k} of {p.name} lacks {', '.join(missing)}")
        cot = validate_cot(row["cot"]).to_dict()
        out.append(PreferencePair(row["video"], cot, row["winner"], row["loser"], row.get("group") or row["video"]))
    if not out:
        raise UserInputError(f"{p.name} holds no pairs; star and reject takes of the same clip first")
    return out


@dataclass(frozen=True)
class DpoConfig(LoraTrainConfig):
    """A Flow-DPO run: the shared LoRA settings plus the pairs and beta."""

    pairs: str = ""  # pairs file (`read_pairs`)
    beta: float = 2000.0  # inverse temperature of the preference (errors are means over latent elements)
    eval_times: int = 4  # fixed times per held-out pair
    window: float = 10.0  # seconds per window of long clips (`trainer.ingest`)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.pairs:
            raise UserInputError("Flow-DPO needs a pairs file (starred and rejected takes of the same clips)")
        if self.beta <= 0 or self.eval_times < 1:
            raise UserInputError(f"need beta > 0 and eval_times >= 1: {self}")


# ------------------------------------------------------------------------------------------- cache


def _pair_windows(pair: PreferencePair, bundle: ModelBundle, length: int) -> list[dict]:
    """Per window of the pair's clip: z (winner), z_l (loser), frames, motion."""
    prepared = prepare_video(pair.video, bundle)
    audio = [
        fit_length(read_audio_file(Path(f), bundle.sample_rate), prepared.n_samples) for f in (pair.winner, pair.loser)
    ]
    pieces = video_windows(bundle, prepared, None, length)
    starts = window_starts(prepared.n_latent, length)
    for piece, s in zip(pieces, starts):
        t = piece["motion"].shape[0]
        piece["z"], piece["z_l"] = (encode_window(bundle, a, s, t) for a in audio)
        piece["start"] = int(s)
    return pieces


def build_pair_cache(folder: Path, bundle: ModelBundle, pairs: list[PreferencePair], window: float) -> list[dict]:
    """Encode every pair once into ``folder`` (reused while the pairs and the model's codec are the same):
    -> one entry per window {"file", "pair", "group", "T", "start" (its first latent frame in the clip)}."""
    ident = [binding(bundle), [p.__dict__ for p in pairs], window, "start"]
    key = hashlib.sha256(json.dumps(ident).encode()).hexdigest()[:16]
    index = folder / "index.json"
    if index.is_file() and json.loads(index.read_text()).get("key") == key:
        return json.loads(index.read_text())["windows"]
    folder.mkdir(parents=True, exist_ok=True)
    length, entries = window_frames(bundle, IngestConfig(window=window)), []
    for k, pair in enumerate(pairs):
        for j, w in enumerate(_pair_windows(pair, bundle, length)):
            name = f"p{k:05d}_{j:03d}.npz"
            with atomic_path(folder / name) as tmp, open(tmp, "wb") as f:
                np.savez_compressed(f, **{n: w[n] for n in ("z", "z_l", "frames", "motion")})
            entry = {"file": name, "pair": k, "group": pair.group, "T": int(w["z"].shape[1]), "start": w["start"]}
            entries.append(entry)
    write_text(index, json.dumps({"key": key, "windows": entries}))
    return entries


# --------------------------------------------------------------------------------------- objective


class DpoObjective:
    """Flow-DPO on the training pairs and its held-out evaluation."""

    def __init__(self, bundle: ModelBundle, cfg: DpoConfig) -> None:
        self.bundle, self.cfg = bundle, cfg
        pairs = read_pairs(cfg.pairs)
        self.folder = Path(cfg.out) / "pairs"
        self.entries = build_pair_cache(self.folder, bundle, pairs, cfg.window)
        states = cot_token_states([Cot(**p.cot) for p in pairs], bundle.cot_mode)
        self.text = [states[e["pair"]] for e in self.entries]
        self.cots = [Cot(**pairs[e["pair"]].cot) for e in self.entries]  # for a model that reads a timeline
        self.train_ids, self.held_ids = held_out_split([e["group"] for e in self.entries], cfg.held_out, cfg.seed)
        self.lengths = np.array([self.entries[i]["T"] for i in self.train_ids], dtype=np.int64)
        b = binding(bundle)
        self.collate = WindowCollate(b["hop"], b["sample_rate"], b["video_rate"], b["video_size"], b["sync_dim"])
        digest = hashlib.sha256(json.dumps([self.entries, [p.__dict__ for p in pairs]]).encode()).hexdigest()[:16]
        self._fingerprint = f"{digest}/{len(self.held_ids)}"

    def fingerprint(self) -> str:
        return self._fingerprint

    def item(self, i: int) -> dict:
        with np.load(self.folder / self.entries[i]["file"]) as npz:
            arrays = {k: npz[k] for k in npz.files}
        item = arrays | {"index": i, "text": self.text[i], "video": True}
        rate = timeline_rate(self.bundle)
        if rate is not None:
            e = self.entries[i]
            item["timeline"] = timeline_track(self.cots[i].temporal, e["T"], rate, e["start"])
        return item

    def margins(
        self, policy, ids: list[int], noise: torch.Tensor, t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(DPO loss, margins (B,)) of pairs ``ids`` with noise (B, C, T) and times (B,) shared by both takes."""
        gen = network(policy)
        items = [self.item(i) for i in ids]
        batch = self.collate(items)
        z_w = batch["z"]  # (B, C, T)
        z_l = torch.from_numpy(np.stack([it["z_l"][:, : z_w.shape[2]] for it in items])).float()  # (B, C, T)
        cond = batch_conditions(gen, self.bundle, batch)
        both = concat_conditions([cond, cond])  # rows: winners, then losers
        x0, x1, tt = torch.cat([z_w, z_l]), torch.cat([noise, noise]), torch.cat([t, t])
        velocity = lambda x, s: gen.velocity(x, s, both)  # noqa: E731
        err = flow_matching_loss(velocity, x0, x1, tt, reduction="none")  # (2B,)
        with torch.no_grad(), policy.disable_adapter():
            ref = flow_matching_loss(velocity, x0, x1, tt, reduction="none")
        b = len(ids)
        return flow_dpo_loss(err[:b], err[b:], ref[:b], ref[b:], self.cfg.beta)

    def loss(self, policy, ids: list[int], rng: torch.Generator) -> tuple[torch.Tensor, dict]:
        items_t = min(int(self.entries[self.train_ids[i]]["T"]) for i in ids)
        c = self.bundle.generator.config.latent_dim
        noise = torch.randn((len(ids), c, items_t), generator=rng)  # (B, C, T)
        t = logit_normal_times(len(ids), generator=rng)  # (B,)
        loss, margin = self.margins(policy, [self.train_ids[i] for i in ids], noise, t)
        return loss, {"margin": float(margin.mean()), "accuracy": float((margin > 0).float().mean())}

    def evaluate(self, policy, ids: list[int] | None = None) -> dict | None:
        """Held-out DPO loss, mean margin and accuracy at fixed times and noise (None without held-out pairs);
        ``ids`` evaluates other pairs (e.g. the training pairs)."""
        ids = self.held_ids if ids is None else ids
        if not ids:
            return None
        losses, margins = [], []
        for k, t in enumerate(eval_times(self.cfg.eval_times, 0.0, 1.0)):
            for i in ids:
                shape = (self.bundle.generator.config.latent_dim, int(self.entries[i]["T"]))
                g = torch.Generator().manual_seed((self.cfg.seed * 1_000_003 + i) * 101 + k + 11)
                loss, margin = self.margins(policy, [i], torch.randn(shape, generator=g)[None], t[None])
                losses.append(float(loss))
                margins.append(float(margin[0]))
        m = np.array(margins)
        return {"held_out_loss": float(np.mean(losses)), "margin": float(m.mean()), "accuracy": float((m > 0).mean())}


def train_dpo(cfg: DpoConfig, progress=None, resume: bool = True, stop=None) -> dict:
    """Run (or resume) Flow-DPO as ``cfg`` says (see `trainer.lora.method.train_lora`)."""
    return train_lora(cfg, DpoObjective, "flow-dpo", progress, resume, stop)
