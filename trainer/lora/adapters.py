"""LoRA adapters (peft) on a copy of a bundle's generator, and the merged result as a new model folder.

The adapters go on the attention and MLP linears of every DiT block (`trainer.grpo.learn.LORA_TARGETS`), or only on
the cross-attention that reads the picture and the CoT (``layers="cross"``: its query, key-value and output
projections; ``"cross-kv"``: its key-value projection alone, the layer that turns the conditions into what the
latent attends to, after Custom Diffusion's choice of what to tune for a new concept); the input projections,
the gates and the null embeddings stay as they were. The reference policy of DPO and
GRPO is the same network with its adapters disabled (no second copy of the weights). The shared bundle is
never touched: the generator is deep-copied first. For rendering the adapters are merged into the weights
(``W + (alpha / r) B A``), so a tuned model is an ordinary bundle that `engine.bundle.load_bundle` reads.

`blend` sets a tune's strength afterwards: ``W_base + s (W_tuned - W_base)`` for every generator weight,
the usual LoRA strength knob (s = 1: the tune, 0: the start model); between them it trades what the tune
learnt against what it forgot.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from engine.bundle import ModelBundle, load_bundle, save_bundle
from engine.errors import UserInputError
from engine.generator import Generator
from trainer.grpo.learn import LORA_TARGETS

LORA_LAYERS = {  # which linears of the DiT blocks get adapters
    "all": LORA_TARGETS,
    "cross": r".*blocks\.\d+\.cross\.(q|kv|out)",
    "cross-kv": r".*blocks\.\d+\.cross\.kv",
}


def lora_generator(generator: Generator, rank: int, alpha: float | None = None, layers: str = "all") -> nn.Module:
    """A peft model around a float32 deep copy of ``generator`` with rank-``rank`` adapters (scale
    ``alpha / rank``, default 1) on the ``layers`` of `LORA_LAYERS`; only the adapters are trainable (B
    starts at zero: the copy starts as the original)."""
    from peft import LoraConfig, get_peft_model

    if rank < 1:
        raise ValueError(f"LoRA rank must be >= 1, got {rank}")
    if layers not in LORA_LAYERS:
        raise UserInputError(f"unknown LoRA layers {layers!r}; choose {', '.join(LORA_LAYERS)}")
    base = copy.deepcopy(generator).float().train()
    config = LoraConfig(r=rank, lora_alpha=alpha or rank, target_modules=LORA_LAYERS[layers], lora_dropout=0.0)
    return get_peft_model(base, config)


def network(policy: nn.Module) -> Generator:
    """The Generator a peft model evaluates (the base with the adapters injected)."""
    return policy.get_base_model()


def merged_generator(policy: nn.Module) -> Generator:
    """A plain Generator with the adapters merged into its weights (the policy is left as it is)."""
    return copy.deepcopy(policy).merge_and_unload().eval().requires_grad_(False)


def tuned_bundle(bundle: ModelBundle, generator: Generator, name: str) -> ModelBundle:
    """``bundle`` with ``generator`` in place of its own (codec, video encoder and planners shared)."""
    return replace(bundle, generator=generator, name=name)


def save_tuned(bundle: ModelBundle, generator: Generator, out: str | Path, extra: dict) -> Path:
    """Write ``out/`` as a model folder (manifest last): the merged generator with the start model's codec,
    video encoder and planner."""
    out = Path(out)
    return save_bundle(tuned_bundle(bundle, generator, out.name), out, extra=extra)


def blended_generator(base: Generator, tuned: Generator, strength: float) -> Generator:
    """A copy of ``tuned`` whose weights are ``base + strength * (tuned - base)`` (same architecture)."""
    if base.config != tuned.config:
        raise UserInputError("the tuned model's generator has another architecture than the start model's")
    if not 0.0 <= strength <= 1.0:
        raise UserInputError(f"--strength must be in 0 .. 1, got {strength:g}")
    start = base.state_dict()
    mixed = {
        k: torch.lerp(start[k].float(), w.float(), strength) if torch.is_floating_point(w) else w
        for k, w in tuned.state_dict().items()
    }
    out = copy.deepcopy(tuned).float()
    out.load_state_dict(mixed)
    return out.eval().requires_grad_(False)


def blend(
    base: str, tuned: str, strength: float, out: str | Path, check=None, progress=None, half: bool = False
) -> dict:
    """Write ``out/``: the tuned model at ``strength`` with the start model's codec, video encoder and
    planner (they must be the tune's), after FoleyBench against the start model (``check``, a
    `trainer.bench_guard.BenchCheck`; its verdict goes into the manifest as a tune's does). -> the verdict.

    ``half``: the generator is written in float16, as the shipped bundles are (half the size); the check
    then renders the rounded weights, the ones written."""
    from trainer.bench_guard import BenchCheck, check_against_base
    from trainer.ingest import state_digest

    start, tune = load_bundle(base), load_bundle(tuned)
    for part in ("codec", "video_encoder"):
        if state_digest(getattr(start, part)) != state_digest(getattr(tune, part)):
            raise UserInputError(f"{tuned} was not tuned from {base} (its {part.replace('_', ' ')} differs)")
    generator = blended_generator(start.generator, tune.generator, strength)
    if half:
        generator = generator.half().float()
    out = Path(out)
    verdict = check_against_base(
        start, tuned_bundle(start, generator, out.name), check or BenchCheck(), out / "bench", progress
    )
    extra = {"method": "blend", "start_model": str(base), "tuned": str(tuned), "strength": strength, "float16": half}
    save_tuned(start, generator.half() if half else generator, out, extra | {"bench_check": verdict})
    return verdict
