"""One process of the multi-process GRPO test (launched twice by tests/test_grpo.py through torchrun):
one Fast-GRPO iteration of a small model, then a fingerprint of this process's weights and its window."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402 - after the path

from trainer.bench_guard import BenchCheck  # noqa: E402
from trainer.grpo.learn import GrpoConfig, train_grpo  # noqa: E402


def main(model: str, prompts: str, out: str) -> None:
    torch.set_num_threads(1)
    cfg = GrpoConfig(
        model=model, out=out, prompts=prompts, eval_prompts=prompts, clips=2, eval_clips=1, iterations=1,
        group=2, steps=6, window=2, minibatch=2, eval_every=0, lr=1e-3, seed=3, bench=BenchCheck(clips=0),
    )  # fmt: skip
    result = train_grpo(cfg, resume=False)
    from accelerate import PartialState

    rank = PartialState().process_index
    state = result["policy"].state_dict()
    digest = hashlib.sha256(b"".join(state[k].numpy().tobytes() for k in sorted(state))).hexdigest()
    report = {"digest": digest, "window_starts": result["window_starts"][-1]}
    (Path(out) / f"process{rank}.json").write_text(json.dumps(report))


if __name__ == "__main__":
    main(*sys.argv[1:4])
