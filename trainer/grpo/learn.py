"""Fast-GRPO and Flow-GRPO: reinforcement learning of the generator with the four reward heads.

The method (PrismAudio section 3.3.2 and appendix B, REFERENCE "Fast-GRPO"): every iteration each process
draws its own SDE window ``[l, l + w)`` of the T sampling steps afresh (`grpo_objective.draw_window`),
samples a group of N takes per prompt with the hybrid sampler (`engine.sampling.sample_hybrid`: ODE steps
outside the window, SDE steps with Gaussian log-probabilities inside), scores them with the reward heads,
turns the weighted rewards into group-relative advantages, and takes policy steps on the clipped surrogate
over the window steps only, minus ``beta`` times the KL to the reference policy. Policy network
evaluations with gradients per sample: w (Fast-GRPO) instead of T (Flow-GRPO = the same code with
``window >= steps``). The policy is the guided sampler: both branches of classifier-free guidance come
from the trained network, as at render time.

Log-probabilities and the KL are averaged over the latent elements (``logprob_reduce="mean"``, as the
official code), which keeps ratios near 1 and explains its tiny clip range (1e-4). Full fine-tuning keeps a
frozen copy of the start generator as the reference; LoRA (peft) keeps none: the reference is the same
network with its adapters disabled. `accelerate` runs it on one CPU, one GPU or several processes
(``torchrun --nproc_per_node N launch.py train grpo ...`` on CPUs, ``accelerate launch`` on GPUs): each
process takes its own prompts and window, gradients are averaged, so every process keeps the same weights.

An iteration is named steps: collect rollouts, score, advantages, policy step, EMA; `GrpoMethod` hands it,
the held-out evaluation and the checkpoint to the one run loop (`trainer.loop.run_loop`: evaluation
cadence, time limit, cancel, checkpoints, log). All randomness of iteration i on process p (prompt choice,
window, noise) is a pure function of (seed, i, p), and a checkpoint holds the policy, its EMA, AdamW's
moments, the iteration and the loop's record, so a resumed run repeats the uninterrupted one exactly. At
the end ``out/`` is a model folder (`engine.bundle.load_bundle`) holding the EMA generator (LoRA merged
into it), the start model's codec, video encoder and planner, after FoleyBench has compared it with the
start model (`trainer.bench_guard.guard`, ``bench``; its verdict in the manifest and the result).
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from engine.bundle import ModelBundle, load_bundle, save_bundle
from engine.errors import UserInputError
from engine.family import Finish, ModelFamily
from engine.generator import Conditions, Generator, generator_guidance
from engine.pipeline import GUIDANCE_INTERVAL, VIDEO_CFG, check_guidance_interval, check_video_cfg
from engine.rewards import DEFAULT_WEIGHTS, RewardHeads, check_weights, load_reward_heads
from engine.sampling import Velocity, gaussian_log_prob, sample_hybrid, sample_ode, sde_step
from trainer.bench_guard import BenchCheck, guard
from trainer.grpo.objective import clipped_surrogate, draw_window, gaussian_kl, group_advantages
from trainer.grpo.prompts import Prompt
from trainer.loop import Accelerated, Progress, Record, Schedule, run_loop
from trainer.run_state import ema_decay, load_training_state, save_training_state

LOG = "train_log.jsonl"  # inside out/: one JSON line per iteration, evaluation and the bench verdict
CHECKPOINT = "checkpoint.safetensors"  # inside out/: the whole training state
LORA_TARGETS = r".*blocks\.\d+\.(attn\.(qkv|out)|cross\.(q|kv|out)|mlp\.(0|2))"  # attention and MLP linears


@dataclass(frozen=True)
class GrpoConfig:
    """Everything that defines a GRPO run (defaults: the reference's Fast-GRPO, CPU-sized groups)."""

    model: str = "default"  # start model: a name under assets/models or a model folder
    out: str = "runs/grpo"  # output folder: checkpoint, train_log.jsonl, and at the end the trained model
    prompts: str | None = None  # prompt folder (FoleyWorld split or videos); None: FoleyWorld train clips
    dataset: str | None = None  # an ingested dataset (trainer.ingest): its video windows are the prompts
    held_out: float = 0.15  # with ``dataset``: fraction of its sources held out as evaluation prompts
    clips: int = 64  # FoleyWorld train clips written to out/prompts when ``prompts`` is None
    eval_prompts: str | None = None  # held-out prompt folder; None: FoleyWorld val clips
    eval_clips: int = 8  # held-out prompts (FoleyWorld val clips written to out/eval_prompts)
    duration: float = 9.0  # seconds of the FoleyWorld clips
    iterations: int = 200  # GRPO iterations (each: rollouts, scores, policy steps)
    prompts_per_iter: int = 1  # prompts per process per iteration
    group: int = 8  # N: takes per prompt (the reference uses 16)
    steps: int = 24  # T: sampling steps of a rollout
    window: int = 2  # w: SDE steps per rollout (Fast-GRPO 2); >= steps is Flow-GRPO
    noise_level: float = 0.7  # a in sigma_t = a sqrt(t / (1 - t))
    cfg: float = 3.5  # guidance scale of the rollouts and of the policy (the render default)
    guidance_interval: tuple[float, float] = GUIDANCE_INTERVAL  # noise levels that are guided (the render default)
    video_cfg: float | None = VIDEO_CFG  # picture-and-motion guidance scale (the render default; None: plain)
    declick: bool = True  # de-click the envelope before decoding rollouts (the render default, `Codec.declick`)
    gate: bool = True  # and gate its weak rises by the picture's events (the render default, `Codec.gate_transients`)
    shift: float = 1.0  # timestep shift of the sampling grid (`engine.sampling.timesteps`)
    weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))  # reward weights
    per_reward_norm: bool = False  # normalise each reward within the group before weighting
    shared_prefix: bool = True  # a group shares one start noise and the ODE steps before the window (False: own starts)
    adv_clip: float = 5.0  # advantages are clipped to +-adv_clip
    clip_range: float = 1e-4  # PPO ratio clip (the official code's value, with mean-reduced log-probs)
    kl: float = 0.04  # beta: weight of the KL to the reference policy
    lr: float = 1e-5  # AdamW learning rate (constant)
    weight_decay: float = 0.0  # AdamW decoupled weight decay
    grad_clip: float = 1.0  # max global gradient norm
    minibatch: int = 4  # takes per optimiser step (a group gives ceil(group / minibatch) steps)
    lora_rank: int = 0  # 0: full fine-tuning; > 0: LoRA of this rank on attention and MLP linears
    lora_alpha: float | None = None  # LoRA scale numerator (default: the rank, i.e. scale 1)
    ema_decay: float = 0.99  # EMA of the trained weights (warmed up), used for evaluation and the output
    logprob_reduce: str = "mean"  # "mean" (official code) or "sum" (the true density) over latent elements
    eval_every: int = 10  # iterations between held-out evaluations (0: only at the end)
    eval_seed: int = 1234  # noise seed of held-out prompt k is eval_seed + k (the same every evaluation)
    ckpt_every: int = 10  # iterations between checkpoints
    seed: int = 0  # seeds prompt order, windows and noise
    threads: int | None = None  # torch CPU threads (None: leave as is)
    cpu: bool = False  # stay on the CPU even when a GPU is there
    stop_at: int | None = None  # stop (checkpoint, no final model) after this iteration; resume later
    max_minutes: float | None = None  # end the run (evaluated, final model written) after this much training time
    bench: BenchCheck = BenchCheck()  # FoleyBench against the start model before the result is offered

    def __post_init__(self) -> None:
        check_weights(self.weights)
        if min(self.iterations, self.prompts_per_iter, self.group, self.steps, self.window, self.minibatch) < 1:
            raise UserInputError(f"iterations, prompts_per_iter, group, steps, window, minibatch must be >= 1: {self}")
        if self.group < 2:
            raise UserInputError("a GRPO group needs at least 2 takes (advantages are relative to the group)")
        if self.lora_rank < 0 or self.ckpt_every < 1 or self.eval_every < 0 or self.kl < 0 or self.lr <= 0:
            raise UserInputError(f"need lora_rank >= 0, ckpt_every >= 1, eval_every >= 0, kl >= 0, lr > 0: {self}")
        check_guidance_interval(self.guidance_interval)
        check_video_cfg(self.video_cfg)
        if self.logprob_reduce not in ("mean", "sum"):
            raise UserInputError(f"logprob_reduce must be 'mean' or 'sum', got {self.logprob_reduce!r}")
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise UserInputError(f"max_minutes must be > 0, got {self.max_minutes}")

    @property
    def width(self) -> int:
        """The window width actually used (at most the number of steps)."""
        return min(self.window, self.steps)

    @property
    def method(self) -> str:
        """'flow-grpo' when the window covers every step, else 'fast-grpo'."""
        return "flow-grpo" if self.width == self.steps else "fast-grpo"


# ---------------------------------------------------------------------------------------- policy


def guided_velocity(
    gen: Generator,
    prompt: Prompt,
    batch: int,
    cfg_scale: float,
    interval: tuple[float, float] = (0.0, 1.0),
    video_cfg: float | None = None,
) -> Velocity:
    """The guided velocity ``v_u + s (v_c - v_u)`` of ``gen`` for ``batch`` takes of ``prompt`` (the branches
    in one network pass) inside the guidance ``interval`` and ``v_c`` outside it, conditions built as
    `engine.pipeline.render` builds them; with ``video_cfg`` (not equal to ``cfg_scale``) split guidance
    (`engine.generator.generator_guidance`)."""
    return guided_velocities(gen, prompt, (batch,), cfg_scale, interval, video_cfg)[0]


def guided_velocities(
    gen: Generator,
    prompt: Prompt,
    batches: tuple[int, ...],
    cfg_scale: float,
    interval: tuple[float, float] = (0.0, 1.0),
    video_cfg: float | None = None,
) -> list[Velocity]:
    """`guided_velocity` for each batch size of ``batches``, the conditions prepared once."""
    cond1: Conditions = gen.prepare_conditions(  # B = 1
        prompt.video_tokens, None, prompt.sync, prompt.text, prompt.n_latent, prompt.timeline
    )
    uncond1 = gen.null_like(cond1, prompt.negative)
    return [
        generator_guidance(gen, cond1.repeat(b), uncond1.repeat(b), cfg_scale, interval, video_cfg) for b in batches
    ]


class PolicyObjective(nn.Module):
    """The trained generator as a Gaussian policy over SDE steps; ``forward`` is the GRPO loss of one window
    step of a minibatch (one module, so that DDP averages its gradients)."""

    def __init__(self, *, generator: nn.Module, reference: Generator | None, config: GrpoConfig) -> None:
        super().__init__()
        self.generator = generator  # Generator (full fine-tuning) or a peft model around one (LoRA)
        self._reference = (reference,)  # frozen start generator, or None with LoRA; a tuple: DDP must not see it
        self.config = config

    @property
    def lora(self) -> bool:
        """Whether the policy is a LoRA (peft) model."""
        return self._reference[0] is None

    def network(self) -> Generator:
        """The Generator the policy evaluates (with LoRA: the base model with the adapters injected)."""
        return self.generator.get_base_model() if self.lora else self.generator

    def reference_velocity(self, prompt: Prompt, batch: int) -> tuple[Velocity, object]:
        """(velocity of the reference policy, context to evaluate it in): adapters disabled with LoRA."""
        import contextlib

        net = self.network() if self.lora else self._reference[0]
        velocity = guided_velocity(
            net, prompt, batch, self.config.cfg, self.config.guidance_interval, self.config.video_cfg
        )
        return velocity, (self.generator.disable_adapter if self.lora else contextlib.nullcontext)

    def forward(self, prompt: Prompt, step: dict) -> dict:
        """Loss and statistics of one window step for a minibatch: ``step`` holds x (M, C, T), x_next
        (M, C, T), t, t_next (scalars), old_log_prob (M,), advantages (M,)."""
        cfg, m = self.config, step["x"].shape[0]
        t = torch.full((m,), float(step["t"]), device=step["x"].device)
        velocity = guided_velocity(self.network(), prompt, m, cfg.cfg, cfg.guidance_interval, cfg.video_cfg)
        v = velocity(step["x"], t)  # (M, C, T), with gradients
        out = sde_step(step["x"], t, step["t_next"], v, None, cfg.noise_level, cfg.logprob_reduce)
        log_prob = gaussian_log_prob(step["x_next"], out.mean, out.std, cfg.logprob_reduce)  # (M,)
        ref_velocity, context = self.reference_velocity(prompt, m)
        with torch.no_grad(), context():
            v_ref = ref_velocity(step["x"], t)
            mean_ref = sde_step(step["x"], t, step["t_next"], v_ref, None, cfg.noise_level).mean
        old, adv = step["old_log_prob"], step["advantages"]
        surrogate, clip_frac, ratio = clipped_surrogate(log_prob, old, adv, cfg.clip_range)
        kl = gaussian_kl(out.mean, mean_ref, out.std, cfg.logprob_reduce).mean()
        return {"loss": surrogate + cfg.kl * kl, "kl": kl.detach(), "clip_frac": clip_frac, "ratio": ratio, "evals": m}


def build_policy(bundle: ModelBundle, cfg: GrpoConfig) -> PolicyObjective:
    """A trainable copy of the bundle's generator (the bundle is shared and never modified): full fine-tuning
    with a frozen reference copy, or LoRA adapters on the attention and MLP linears with none."""
    gen = copy.deepcopy(bundle.generator).float().train()
    if cfg.lora_rank == 0:
        reference = copy.deepcopy(bundle.generator).float().eval().requires_grad_(False)
        return PolicyObjective(generator=gen.requires_grad_(True), reference=reference, config=cfg)
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        r=cfg.lora_rank, lora_alpha=cfg.lora_alpha or cfg.lora_rank, target_modules=LORA_TARGETS, lora_dropout=0.0
    )
    return PolicyObjective(generator=get_peft_model(gen, lora), reference=None, config=cfg)


class ParamEma:
    """Exponential moving average of the trainable parameters only (with LoRA: the adapters), by name."""

    def __init__(self, model: nn.Module) -> None:
        self.shadow = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

    @torch.no_grad()
    def update(self, model: nn.Module, decay: float) -> None:
        for n, p in model.named_parameters():
            if n in self.shadow:
                self.shadow[n].lerp_(p.detach(), 1.0 - decay)

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """Put the EMA weights into ``model``; returns the weights it had (for `restore`)."""
        params = dict(model.named_parameters())
        saved = {n: params[n].detach().clone() for n in self.shadow}
        for n, v in self.shadow.items():
            params[n].copy_(v)
        return saved

    @torch.no_grad()
    def restore(self, model: nn.Module, saved: dict[str, torch.Tensor]) -> None:
        params = dict(model.named_parameters())
        for n, v in saved.items():
            params[n].copy_(v)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.shadow)

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if set(state) != set(self.shadow):
            raise ValueError("EMA checkpoint holds other parameters than this policy (full vs LoRA, rank?)")
        for n, v in state.items():
            self.shadow[n].copy_(v)


# ------------------------------------------------------------------------------------------- setup


MUST_MATCH = (
    "model",
    "prompts",
    "dataset",  # an older checkpoint has no such field: None, as a run without a dataset
    "clips",
    "duration",
    "group",
    "steps",
    "window",
    "lora_rank",
    "seed",
    "weights",
    "shared_prefix",  # False in a checkpoint saved before the field existed
)


def _device_bundle(bundle: ModelBundle, device: torch.device) -> ModelBundle:
    """The shared bundle itself on the CPU; copies of its parts on another device."""
    if device.type == "cpu":
        return bundle
    names = ("codec", "generator", "video_encoder", "planner", "cue_net")
    moved = {n: copy.deepcopy(getattr(bundle, n)).to(device) for n in names if getattr(bundle, n) is not None}
    return dataclasses.replace(bundle, **moved)


def _prompt_sets(cfg: GrpoConfig, bundle: ModelBundle, acc) -> tuple[list[Prompt], list[Prompt]]:
    """Training and held-out prompts; FoleyWorld clips are written by the main process first."""
    from engine.planner.default import has_planner, load_planner
    from trainer.grpo.prompts import foleyworld_prompts, load_prompts

    if cfg.dataset:
        from trainer.dataset import dataset_prompts

        return dataset_prompts(cfg.dataset, bundle, cfg.held_out, cfg.seed, cfg.clips)
    planner = load_planner(cfg.model).plan if has_planner(cfg.model) else None
    out = Path(cfg.out)
    with acc.main_process_first():
        if cfg.prompts:
            train = load_prompts(cfg.prompts, bundle, cfg.clips, planner)
        else:
            train = foleyworld_prompts(out / "prompts", "train", cfg.clips, cfg.duration, bundle)
        if cfg.eval_prompts:
            held = load_prompts(cfg.eval_prompts, bundle, cfg.eval_clips, planner)
        else:
            held = foleyworld_prompts(out / "eval_prompts", "val", cfg.eval_clips, cfg.duration, bundle)
    return train, held


def _setup(cfg: GrpoConfig, resume: bool, heads: RewardHeads | None) -> dict:
    """Accelerator, bundle, prompts, policy, AdamW, EMA; restored from ``out/checkpoint.safetensors``."""
    from accelerate import Accelerator

    acc = Accelerator(cpu=cfg.cpu)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    bundle = _device_bundle(load_bundle(cfg.model), acc.device)
    train, held = _prompt_sets(cfg, bundle, acc)
    torch.manual_seed(cfg.seed)  # LoRA's random initialisation (DDP then broadcasts process 0's weights)
    policy = build_policy(bundle, cfg).to(acc.device)
    trainable = [p for p in policy.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay)
    model, optimizer = acc.prepare(policy, optimizer)
    ema = ParamEma(policy)  # after prepare: the weights every process now shares
    state = {"model": policy, "ema": ema, "optim": optimizer, "gen": None, "step": 0, "config": cfg, "extra": {}}
    start, ckpt = 0, out / CHECKPOINT
    if not resume and acc.is_main_process:
        ckpt.unlink(missing_ok=True)
        (out / LOG).unlink(missing_ok=True)
    acc.wait_for_everyone()
    if resume and ckpt.is_file():
        try:
            start = load_training_state(ckpt, state, must_match=MUST_MATCH, defaults={"shared_prefix": False})
        except ValueError as exc:
            raise UserInputError(f"{exc}; use --no-resume or another --out") from None
    heads = heads or load_reward_heads()
    s = {"acc": acc, "bundle": bundle, "train": train, "held": held, "model": model, "policy": policy}
    return s | {"optimizer": optimizer, "ema": ema, "state": state, "start": start, "heads": heads}


# ------------------------------------------------------------------------------------- iteration


def pick_prompts(n_prompts: int, per_process: int, seed: int, iteration: int, process: int, n_proc: int) -> list[int]:
    """Prompt indices of one process in one iteration: the processes share one seeded order and take
    consecutive, disjoint slices of it (repeating the prompt set when it is too small)."""
    rng = np.random.default_rng([seed, iteration, 0xB0])
    need = per_process * n_proc
    order = np.concatenate([rng.permutation(n_prompts) for _ in range(-(-need // n_prompts))])
    return [int(i) for i in order[process * per_process : (process + 1) * per_process]]


def noise_generator(seed: int, iteration: int, process: int, k: int, device: torch.device) -> torch.Generator:
    """The generator of the noise of rollout group k: a pure function of (seed, iteration, process, k)."""
    value = int(np.random.SeedSequence([seed, iteration, process, k, 0x401]).generate_state(1, np.uint64)[0]) >> 1
    return torch.Generator(device=device).manual_seed(value)


@dataclass(eq=False)
class Group:
    """The N takes of one prompt in one iteration."""

    prompt: Prompt  # the condition
    steps: list[dict]  # per window step: t, t_next, x (N, C, T), x_next (N, C, T), old_log_prob (N,)
    audio: np.ndarray  # (N, samples, 2) decoded takes
    rewards: dict[str, torch.Tensor] = field(default_factory=dict)  # dimension -> (N,) scores
    total: torch.Tensor | None = None  # (N,) weighted rewards
    advantages: torch.Tensor | None = None  # (N,) group-relative advantages


@torch.no_grad()
def collect_rollouts(
    policy: PolicyObjective, family: ModelFamily, prompt: Prompt, cfg: GrpoConfig, window, rng
) -> Group:
    """N hybrid ODE/SDE rollouts of ``prompt`` (SDE steps in ``window`` only) and their audio, decoded by the
    model's family as a render is (`ModelFamily.decode_window`)."""
    net = policy.network()
    device = next(net.parameters()).device
    starts = 1 if cfg.shared_prefix else cfg.group  # one start noise shared by the group, or one per take
    batches = (cfg.group, 1) if cfg.shared_prefix else (cfg.group,)
    velocity, *one = guided_velocities(net, prompt, batches, cfg.cfg, cfg.guidance_interval, cfg.video_cfg)
    x1 = torch.randn((starts, net.config.latent_dim, prompt.n_latent), generator=rng, device=device)
    branch = dict(branch=cfg.group, prefix_velocity=one[0]) if cfg.shared_prefix else {}
    traj = sample_hybrid(velocity, x1, cfg.steps, window, cfg.noise_level, rng, cfg.shift, cfg.logprob_reduce, **branch)
    steps = [
        {"t": traj.ts[j], "t_next": traj.ts[j + 1], "x": traj.states[j], "x_next": traj.states[j + 1]}
        | {"old_log_prob": traj.log_probs[j]}
        for j in traj.sde_steps
    ]
    audio = family.decode_window(traj.states[-1], prompt.prepared, 0, prompt.n_latent, _finish(cfg))  # (N, n, 2)
    return Group(prompt, steps, audio)


def score_group(group: Group, heads: RewardHeads, sample_rate: int) -> None:
    """Every take's reward per dimension, in place (the video side of the rewards is the prompt's view)."""
    scores, _ = heads.score_batch(group.audio, sample_rate, group.prompt.view, group.prompt.cot)
    group.rewards = {d: torch.tensor([s[d] for s in scores]) for d in heads.dimensions}


def set_advantages(group: Group, cfg: GrpoConfig) -> None:
    """Group-relative advantages of the weighted rewards, in place."""
    group.advantages, group.total = group_advantages(group.rewards, cfg.weights, cfg.per_reward_norm, cfg.adv_clip)


def policy_step(s: dict, cfg: GrpoConfig, groups: list[Group]) -> dict:
    """Optimiser steps over minibatches of each group; within one, the window steps' gradients add up
    (synchronised across processes once per optimiser step). Returns the averaged statistics."""
    import contextlib

    acc, model, optimizer = s["acc"], s["model"], s["optimizer"]
    trainable = [p for p in model.parameters() if p.requires_grad]
    stats, evals, norms = [], 0, []
    for group in groups:
        adv = group.advantages.to(acc.device)
        for lo in range(0, cfg.group, cfg.minibatch):
            rows = slice(lo, lo + cfg.minibatch)
            for n, step in enumerate(group.steps):
                batch = {k: (v[rows] if torch.is_tensor(v) and v.ndim else v) for k, v in step.items()}
                sync = contextlib.nullcontext() if n == len(group.steps) - 1 else acc.no_sync(model)
                with sync:
                    out = model(group.prompt, batch | {"advantages": adv[rows]})
                    acc.backward(out["loss"] / len(group.steps))
                stats.append({k: float(out[k].detach()) for k in ("loss", "kl", "clip_frac", "ratio")})
                evals += out["evals"]
            norms.append(float(acc.clip_grad_norm_(trainable, cfg.grad_clip)))
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    mean = {k: float(np.mean([st[k] for st in stats])) for k in stats[0]}
    return mean | {"grad_norm": float(np.mean(norms)), "policy_nfe_per_sample": evals / (cfg.group * len(groups))}


def iteration(s: dict, cfg: GrpoConfig, it: int) -> dict:
    """One GRPO iteration (collect rollouts, score, advantages, policy step, EMA) -> its log entry."""
    acc, policy, t0 = s["acc"], s["policy"], time.perf_counter()
    window = draw_window(cfg.steps, cfg.width, cfg.seed, it, acc.process_index)
    picks = pick_prompts(len(s["train"]), cfg.prompts_per_iter, cfg.seed, it, acc.process_index, acc.num_processes)
    rngs = [noise_generator(cfg.seed, it, acc.process_index, k, acc.device) for k in range(len(picks))]
    groups = [collect_rollouts(policy, s["bundle"], s["train"][i], cfg, window, r) for i, r in zip(picks, rngs)]
    t_roll = time.perf_counter()
    for g in groups:
        score_group(g, s["heads"], s["bundle"].sample_rate)
        set_advantages(g, cfg)
    t_score = time.perf_counter()
    stats = policy_step(s, cfg, groups)
    s["ema"].update(policy, ema_decay(it, cfg.ema_decay))
    rewards = {d: float(torch.cat([g.rewards[d] for g in groups]).mean()) for d in s["heads"].dimensions}
    weighted = float(torch.cat([g.total for g in groups]).mean())
    local = torch.tensor([*rewards.values(), weighted, *stats.values()], dtype=torch.float64, device=acc.device)
    local = acc.reduce(local, "mean").cpu().tolist()  # averaged over the processes
    names = [f"reward_{d}" for d in rewards] + ["reward_weighted", *stats]
    starts = acc.gather(torch.tensor([window[0]], device=acc.device)).cpu().tolist()
    t_end = time.perf_counter()
    timing = {"rollout_s": t_roll - t0, "score_s": t_score - t_roll, "policy_s": t_end - t_score, "seconds": t_end - t0}
    return {"iteration": it + 1, **dict(zip(names, local)), "window_starts": starts, "window": window[1]} | timing


def _finish(cfg: GrpoConfig) -> Finish:
    """What a rollout's latent goes through before decoding: the render's own finish (`engine.family.Finish`)."""
    return Finish(cfg.declick, cfg.gate)


@torch.no_grad()
def evaluate(s: dict, cfg: GrpoConfig) -> dict:
    """Mean held-out rewards of the EMA policy: ODE renders (seed eval_seed + k) scored by the heads."""
    from engine.rewards import weighted_total

    policy, family = s["policy"], s["bundle"]
    saved = s["ema"].copy_to(policy)
    try:
        net, rows = policy.network(), []
        for k, prompt in enumerate(s["held"]):
            rng = torch.Generator().manual_seed(cfg.eval_seed + k)
            x1 = torch.randn((1, net.config.latent_dim, prompt.n_latent), generator=rng).to(s["acc"].device)
            z = sample_ode(
                guided_velocity(net, prompt, 1, cfg.cfg, cfg.guidance_interval, cfg.video_cfg), x1, cfg.steps, cfg.shift
            )
            audio = family.decode_window(z, prompt.prepared, 0, prompt.n_latent, _finish(cfg))  # (1, n, 2)
            scores, _ = s["heads"].score_batch(audio, s["bundle"].sample_rate, prompt.view, prompt.cot)
            rows.append(scores[0] | {"weighted": weighted_total(scores[0], cfg.weights)})
    finally:
        s["ema"].restore(policy, saved)
    return {f"eval_{k}": float(np.mean([r[k] for r in rows])) for k in rows[0]}


# ------------------------------------------------------------------------------------------- save


def save_checkpoint(s: dict, cfg: GrpoConfig, it: int, extra: dict) -> None:
    """The whole training state after ``it`` iterations, the loop's record in ``extra`` (main process; the
    others wait)."""
    s["acc"].wait_for_everyone()
    if s["acc"].is_main_process:
        save_training_state(Path(cfg.out) / CHECKPOINT, s["state"] | {"step": it, "extra": extra})
    s["acc"].wait_for_everyone()


def trained_bundle(s: dict, cfg: GrpoConfig) -> ModelBundle:
    """The start model with the EMA generator (LoRA merged into it); the start model's other parts."""
    policy, bundle = s["policy"], s["bundle"]
    saved = s["ema"].copy_to(policy)
    try:
        gen = copy.deepcopy(policy.generator)
        gen = gen.merge_and_unload() if policy.lora else gen
    finally:
        s["ema"].restore(policy, saved)
    gen = gen.eval().requires_grad_(False)
    return dataclasses.replace(bundle, generator=gen, name=Path(cfg.out).name)  # planners kept


# ------------------------------------------------------------------------------------------ method


class GrpoMethod(Accelerated):
    """GRPO as the loop drives it: every process runs one; the main process evaluates, logs and writes."""

    def __init__(self, s: dict, cfg: GrpoConfig) -> None:
        self.s, self.cfg, self.acc = s, cfg, s["acc"]

    def step(self, step: int) -> dict:
        return iteration(self.s, self.cfg, step)

    def evaluate(self, step: int) -> dict:
        return {"iteration": step} | evaluate(self.s, self.cfg)  # "iteration": what `trainer.grpo.compare` reads

    def keep_best(self) -> None:
        """Nothing: the result is the EMA policy at the end (the reference's), the best only logged."""

    def checkpoint(self, step: int, extra: dict) -> None:
        save_checkpoint(self.s, self.cfg, step, extra)

    def finish(self, step: int, record: Record, progress: Progress | None) -> dict:
        """``out/`` as a model folder after the FoleyBench guard (main process; the others wait)."""
        cfg, verdict = self.cfg, None
        if self.is_main:
            trained = trained_bundle(self.s, cfg)
            verdict = guard(self.s["bundle"], trained, cfg.bench, Path(cfg.out) / "bench", step, progress)
            extra = {"grpo": asdict(cfg), "iterations": step, "start_model": cfg.model, "bench_check": verdict}
            save_bundle(trained, cfg.out, extra=extra)
        self.s["acc"].wait_for_everyone()
        return {"bench_check": verdict} if verdict is not None else {}


def schedule(cfg: GrpoConfig) -> Schedule:
    """The loop's schedule of a GRPO run: one log entry per iteration, the held-out weighted reward (higher
    is better) watched; the start model evaluated when there are evaluations at all; no early stopping."""
    every = dict(eval_every=cfg.eval_every, ckpt_every=cfg.ckpt_every, log_every=1, eval_start=cfg.eval_every > 0)
    stops = dict(max_minutes=cfg.max_minutes, stop_at=cfg.stop_at)
    return Schedule(steps=cfg.iterations, **every, **stops, metric="eval_weighted", higher_is_better=True)


def train_grpo(
    cfg: GrpoConfig,
    progress: Progress | None = None,
    resume: bool = True,
    heads: RewardHeads | None = None,
    stop: Callable[[], bool] | None = None,
) -> dict:
    """Run (or resume) GRPO as ``cfg`` says; returns ``{"out", "finished", "iterations", "resumed_from",
    "stopped", "history", "sec_per_iteration", "policy", "window_starts"}`` (``policy``: the trained
    `PolicyObjective` of this process, its live weights, not the EMA; ``stopped``: why the run ended early,
    e.g. ``max_minutes``, None otherwise) and, when finished, the FoleyBench verdict ``bench_check``.
    ``heads`` replaces the default reward heads; ``stop()`` returning True (checked before every iteration,
    the main process's answer taken) ends the session with a checkpoint, to be resumed."""
    old_threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        s = _setup(cfg, resume, heads)
        record = Record.from_extra(s["state"]["extra"])
        end = run_loop(GrpoMethod(s, cfg), schedule(cfg), record, s["start"], Path(cfg.out) / LOG, progress, stop)
        steps = [h for h in record.history if h.get("phase") == "train"]
        done = [h["seconds"] for h in steps]
        result = {"out": cfg.out if end.finished else None, "finished": end.finished, "iterations": end.step}
        result |= {"resumed_from": s["start"], "stopped": record.stopped, "history": record.history}
        result |= {"sec_per_iteration": float(np.mean(done)) if done else None, "policy": s["policy"]}
        return result | {"window_starts": [h["window_starts"] for h in steps]} | end.result
    finally:
        torch.set_num_threads(old_threads)
