"""LoRA flow-matching fine-tuning of a model on an ingested dataset (a studio's footage and sound library).

The objective is pretraining's (`trainer.pretrain`, REFERENCE "Flow matching"): ``|| v_theta(x_t, t, c) -
(x1 - x0) ||^2`` with the dataset's codec latents ``x0``, noise ``x1``, logit-normal ``t`` and the
generator's own classifier-free-guidance dropout of (video + sync) and text. Text-audio pairs have no
picture: their rows get the null video and sync (the branch CFG dropout trains), so the pairs teach the
generator what the new words sound like without teaching it a wrong picture. Only the adapters train;
the video encoder, the codec and the input projections stay frozen, which is the point of LoRA on a
small studio dataset.

Distillation (``distill`` > 0): on the windows of replayed FoleyWorld clips (`trainer.ingest.replay_folder`)
the target becomes ``(1 - distill) (x1 - x0) + distill v_start(x_t, t, c)``, the start model's own
velocity (the same network with its adapters disabled, so no second copy), at the same noisy point and
the same dropped conditions; half of those rows (``null_anchor``) are shown with neither picture nor text,
and every row left with neither (a dropped studio row included) also gets the start model's target, so
the unconditional branch that guidance subtracts from every render stays where it was. Replay with
ground-truth targets still lets the adapters move the old
classes wherever the data is noisy; the start model's prediction is a noise-free target that pins the
function there (learning without forgetting, Li & Hoiem, 2016, in its flow-matching form).

Guided targets (``guided``): a render does not follow the conditional velocity ``v_c`` but the guided one,
``v = v_u + s (v_t - v_u) + s_v (v_c - v_t)`` (split guidance at the render defaults, s = 3.5, s_v = 5, at
the noise levels of the guidance interval; `engine.sampling.guided`). A tune that moves ``v_c`` of a
studio clip by ``d`` toward its sound moves the render by ``s_v d``: five times too far, past the house
sound (louder, further from it). With guided targets a studio row with its picture and text, at a time
the render guides, is trained toward the conditional velocity that makes the *guided* velocity equal the
flow-matching target (`guidance_compensated_target`, the other two branches taken from the network as it
is, without gradient); everywhere else the target is the usual one. The renders of a studio's clips then
aim at its sound, and ``v_c`` moves by about ``1 / s_v`` of what it would otherwise. The held-out loss of
those windows is measured on the guided velocity too.

Held out: a seeded part of the sources (`trainer.dataset.held_out_split`); its loss is measured at
``eval_times`` fixed times (quantiles of the training time distribution) with fixed noise per window,
without dropout. Early stopping, checkpoints and the FoleyBench check are the run loop's (`trainer.loop`, driven
through `trainer.lora.method`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from engine.bundle import ModelBundle
from engine.errors import UserInputError
from engine.generator import Conditions, Generator
from trainer.dataset import TrainDataset, check_binding, collate_for, held_out_split, timeline_rate
from trainer.lora.adapters import network
from trainer.lora.method import LoraTrainConfig, train_lora
from trainer.losses import flow_matching_loss, interpolate, logit_normal_times, velocity_error


@dataclass(frozen=True)
class FinetuneConfig(LoraTrainConfig):
    """A LoRA fine-tune: the shared settings plus the dataset and the flow-matching times."""

    dataset: str = ""  # dataset folder written by `trainer.ingest`
    t_mean: float = 0.0  # logit-normal mean of the training times (pretraining's)
    t_std: float = 1.0  # logit-normal std of the training times
    eval_times: int = 4  # fixed times per held-out window (quantiles of the same logit-normal)
    eval_batch: int = 8  # held-out windows per evaluation batch
    distill: float = 0.0  # replayed FoleyWorld windows: weight of the start model's velocity in their target
    null_anchor: float = 0.5  # with distill: share of replayed rows shown with neither picture nor text
    guided: bool = False  # studio rows with picture and text: targets for the render's guided velocity

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.dataset:
            raise UserInputError("a fine-tune needs a dataset folder (python launch.py train ingest ...)")
        if self.eval_times < 1 or self.eval_batch < 1 or self.t_std <= 0:
            raise UserInputError(f"need eval_times >= 1, eval_batch >= 1, t_std > 0: {self}")
        if not (0.0 <= self.distill <= 1.0 and 0.0 <= self.null_anchor <= 1.0):
            raise UserInputError(f"need 0 <= distill <= 1 and 0 <= null_anchor <= 1: {self}")


def null_video_rows(gen: Generator, cond: Conditions, rows: torch.Tensor) -> Conditions:
    """``cond`` with the null video and sync on the rows where ``rows`` (B,) is True (text-audio pairs)."""
    null = gen.null_like(cond)
    r = rows.to(cond.video.device)[:, None]  # (B, 1)
    return replace(
        cond,
        video_mask=torch.where(r, null.video_mask, cond.video_mask),
        video_seq=torch.where(r[..., None], null.video_seq, cond.video_seq),
        sync=torch.where(r[..., None], null.sync, cond.sync),
    )


def batch_conditions(gen: Generator, bundle: ModelBundle, batch: dict) -> Conditions:
    """Conditions of a collated batch (`trainer.dataset.WindowCollate`): frozen video tokens (B, F, Dv),
    motion (B, T, Ds), four text blocks; text-audio rows get the null video and sync."""
    with torch.no_grad():
        tokens = bundle.video_encoder(batch["frames"], batch["frame_mask"])  # (B, F, Dv)
    t = batch["z"].shape[2]
    cond = gen.prepare_conditions(tokens, batch["frame_mask"], batch["motion"], batch["text"], t, batch.get("timeline"))
    return null_video_rows(gen, cond, ~batch["has_video"])


def guidance_compensated_target(
    target: torch.Tensor,
    v_t: torch.Tensor,
    v_u: torch.Tensor,
    cfg: float,
    video_cfg: float | None,
) -> torch.Tensor:
    """The conditional velocity ``v_c`` (B, C, T) for which guidance gives ``target``: with split guidance
    (``video_cfg`` s_v) ``v_u + s (v_t - v_u) + s_v (v_c - v_t) = target``, so ``v_c = v_t + (target - v_u -
    s (v_t - v_u)) / s_v``; with plain guidance (``video_cfg`` None) ``v_u + s (v_c - v_u) = target``, so
    ``v_c = v_u + (target - v_u) / s`` (``v_t`` unused). Needs a positive scale."""
    if video_cfg is None:
        if cfg <= 0:
            raise UserInputError(f"guided targets need a guidance scale > 0, got {cfg:g}")
        return v_u + (target - v_u) / cfg
    if video_cfg <= 0:
        raise UserInputError(f"guided targets need a picture guidance scale > 0, got {video_cfg:g}")
    return v_t + (target - v_u - cfg * (v_t - v_u)) / video_cfg


def render_guidance() -> tuple[float, float | None, tuple[float, float]]:
    """(cfg, video_cfg or None for plain guidance, interval) of the render defaults (`RenderSettings`)."""
    from engine.pipeline import RenderSettings

    r = RenderSettings()
    video = None if r.video_cfg is None or r.video_cfg == r.cfg else r.video_cfg
    return r.cfg, video, tuple(r.guidance_interval)


def guided_rows(batch: dict, full: torch.Tensor, t: torch.Tensor, interval: tuple[float, float]) -> torch.Tensor:
    """(B,) bool: studio rows (not replayed) with a picture, shown with picture and text (``full``), at a
    time ``t`` (B,) inside the render's guidance ``interval``."""
    lo, hi = interval
    own = batch["has_video"] & ~batch["replay"]
    return own.to(t.device) & full & (t >= lo) & (t <= hi)


def eval_times(k: int, mean: float, std: float) -> torch.Tensor:
    """(k,) fixed evaluation times: the (j + 0.5) / k quantiles of the logit-normal training times."""
    q = torch.special.ndtri((torch.arange(k, dtype=torch.float64) + 0.5) / k)
    return torch.sigmoid(mean + std * q).float()


class FlowObjective:
    """The flow-matching loss on a dataset's training windows and its held-out loss."""

    def __init__(self, bundle: ModelBundle, cfg: FinetuneConfig) -> None:
        self.bundle, self.cfg = bundle, cfg
        self.data = TrainDataset(cfg.dataset, bundle.cot_mode, timeline_rate(bundle))
        check_binding(self.data.manifest, bundle, cfg.dataset)
        self.train_ids, self.held_ids = held_out_split(self.data.groups(), cfg.held_out, cfg.seed)
        if not self.train_ids:
            raise UserInputError(f"dataset {cfg.dataset} has no training windows")
        self.lengths = self.data.lengths()[self.train_ids]  # (N_train,)
        self.collate = collate_for(self.data)
        self._fingerprint = f"{self.data.fingerprint()}/{len(self.held_ids)}"
        self.guidance = render_guidance()  # (cfg, video_cfg, interval) the guided targets aim at

    def fingerprint(self) -> str:
        return self._fingerprint

    def loss(self, policy: torch.nn.Module, ids: list[int], rng: torch.Generator) -> tuple[torch.Tensor, dict]:
        """Flow-matching loss of training windows ``ids`` (positions in the training part)."""
        gen = network(policy)
        batch = self.collate([self.data[self.train_ids[i]] for i in ids])
        z = batch["z"]  # (B, C, T)
        noise = torch.randn(z.shape, generator=rng)  # (B, C, T), drawn first: its stream fixes the rest
        t = logit_normal_times(z.shape[0], self.cfg.t_mean, self.cfg.t_std, generator=rng)  # (B,)
        cond = batch_conditions(gen, self.bundle, batch)
        x_t, target = interpolate(z, noise, t), noise - z  # (B, C, T) each
        logs = {"video_rows": float(batch["has_video"].float().mean())}
        if self.cfg.distill <= 0:  # the same draws as `Generator.drop_conditions`
            drop_video, drop_text = gen.dropout_masks(cond.batch_size, cond.video.device, rng)
            cond, full = gen.substitute_null(cond, drop_video, drop_text), ~(drop_video | drop_text)
        else:
            cond, anchored, full = self._distilled_rows(gen, cond, batch, rng)
            if anchored.any():  # toward what the start model predicts there (the adapters off)
                with torch.no_grad(), policy.disable_adapter():
                    v_start = gen.velocity(x_t, t, cond)
                mixed = (1.0 - self.cfg.distill) * target + self.cfg.distill * v_start
                target = torch.where(anchored[:, None, None], mixed, target)
            logs["anchored_rows"] = float(anchored.float().mean())
        if self.cfg.guided:
            rows = guided_rows(batch, full, t, self.guidance[2])
            if rows.any():
                target = torch.where(rows[:, None, None], self._compensated(gen, x_t, t, cond, target), target)
            logs["guided_rows"] = float(rows.float().mean())
        return velocity_error(gen.velocity(x_t, t, cond), target), logs

    def _compensated(self, gen: Generator, x_t, t, cond: Conditions, target: torch.Tensor) -> torch.Tensor:
        """`guidance_compensated_target` of every row, the text-only and unconditional branches from the
        network as it is now (adapters on), without gradient: (B, C, T)."""
        cfg, video_cfg, _ = self.guidance
        with torch.no_grad():
            if video_cfg is None:
                v_u, v_t = gen.velocity(x_t, t, gen.null_like(cond)), None
            else:
                v_t, v_u = gen.velocity_branches(x_t, t, [gen.text_only_like(cond), gen.null_like(cond)])
        return guidance_compensated_target(target, v_t, v_u, cfg, video_cfg)

    def _distilled_rows(self, gen: Generator, cond: Conditions, batch: dict, rng: torch.Generator):
        """Dropped conditions, the rows whose target is the start model's (every replayed row, a share
        ``null_anchor`` of them shown with neither picture nor text, and every row left with neither) and
        the rows shown with both picture and text: (conditions, anchored (B,), full (B,)).

        The unconditional branch is what classifier-free guidance subtracts from every render
        (``v_u + g (v_c - v_u)``, g = 3.5): a studio's data moving it by d moves every render by
        ``(g - 1) d`` the other way, FoleyWorld's classes included, so it stays the start model's."""
        device = cond.video.device
        drop_video, drop_text = gen.dropout_masks(cond.batch_size, device, rng)  # (B,) each
        replay = batch["replay"].to(device)
        null_row = replay & (torch.rand(cond.batch_size, generator=rng) < self.cfg.null_anchor).to(device)
        drop_video, drop_text = drop_video | null_row, drop_text | null_row
        no_picture = drop_video | ~batch["has_video"].to(device)  # text-audio rows have the null video already
        anchored = replay | (no_picture & drop_text)
        return gen.substitute_null(cond, drop_video, drop_text), anchored, ~(drop_video | drop_text)

    def evaluate(self, policy: torch.nn.Module) -> dict | None:
        """Mean held-out loss over windows x fixed times, no dropout (None without held-out windows)."""
        if not self.held_ids:
            return None
        gen, cfg = network(policy), self.cfg
        times = eval_times(cfg.eval_times, cfg.t_mean, cfg.t_std)  # (K,)
        losses = np.zeros((len(self.held_ids), len(times)))  # (N_held, K)
        for lo in range(0, len(self.held_ids), cfg.eval_batch):
            ids = self.held_ids[lo : lo + cfg.eval_batch]
            batch = self.collate([self.data[i] for i in ids])
            cond, z = batch_conditions(gen, self.bundle, batch), batch["z"]
            velocity = lambda x, s, c=cond: gen.velocity(x, s, c)  # noqa: E731
            if cfg.guided:  # the studio's own windows as a render samples them
                velocity = self._render_velocity(gen, cond, batch)
            for k, t in enumerate(times):
                noise = torch.stack([_eval_noise(cfg.seed, i, k, z.shape[1:]) for i in ids])  # (B, C, T)
                err = flow_matching_loss(velocity, z, noise, t.expand(len(ids)), reduction="none")
                losses[lo : lo + len(ids), k] = err.numpy()
        out = {"held_out_loss": float(losses.mean()), "held_out_windows": len(self.held_ids)}
        replay = np.array([self.data.is_replay(i) for i in self.held_ids])
        if replay.any() and not replay.all():  # the studio's own windows and the replayed ones apart
            out |= {"held_out_own": float(losses[~replay].mean()), "held_out_replay": float(losses[replay].mean())}
        return out

    def _render_velocity(self, gen: Generator, cond: Conditions, batch: dict):
        """velocity(x, t): the guided velocity of the render defaults on the studio's own windows with a
        picture (inside the guidance interval; `engine.generator.generator_guidance`), the conditional one on
        replayed windows and text-audio pairs."""
        from engine.generator import generator_guidance

        plain = lambda x, t: gen.velocity(x, t, cond)  # noqa: E731
        own = (batch["has_video"] & ~batch["replay"])[:, None, None]
        if not own.any():
            return plain
        cfg, video_cfg, interval = self.guidance
        guide = generator_guidance(gen, cond, gen.null_like(cond), cfg, interval, video_cfg)
        if own.all():
            return guide
        return lambda x, t: torch.where(own, guide(x, t), plain(x, t))


def _eval_noise(seed: int, item: int, k: int, shape) -> torch.Tensor:
    """The fixed noise of held-out window ``item`` at evaluation time ``k`` (cropped windows share a prefix)."""
    g = torch.Generator().manual_seed((seed * 1_000_003 + item) * 101 + k + 7)
    return torch.randn(tuple(shape), generator=g)


def finetune(cfg: FinetuneConfig, progress=None, resume: bool = True, stop=None) -> dict:
    """Run (or resume) a LoRA fine-tune as ``cfg`` says (see `trainer.lora.method.train_lora`)."""
    return train_lora(cfg, FlowObjective, "lora-finetune", progress, resume, stop)
