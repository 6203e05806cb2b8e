"""Fast-GRPO and Flow-GRPO on a tiny model: the rollout's log-probabilities against a direct Gaussian
density, advantages / surrogate / KL in exact cases, windows that move every iteration and differ between
processes, w policy evaluations per sample, the LoRA reference as the base with adapters disabled, an
exact resume, and two processes (torchrun + accelerate, gloo) that end one step with identical weights."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.bundle import load_bundle, save_bundle
from engine.generator import Generator
from engine.sampling import sde_sigma
from tests.bundles import tiny_bundle
from trainer.bench_guard import BenchCheck
from trainer.foleyworld.scene import WorldConfig
from trainer.foleyworld.splits import write_split
from trainer.grpo.learn import GrpoConfig, build_policy, collect_rollouts, guided_velocity, noise_generator, train_grpo
from trainer.grpo.objective import clipped_surrogate, draw_window, gaussian_kl, group_advantages
from trainer.grpo.prompts import load_prompts

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return save_bundle(tiny_bundle(), tmp_path_factory.mktemp("model") / "tiny")


@pytest.fixture(scope="module")
def prompt_dir(tmp_path_factory) -> Path:
    """Two 2 s FoleyWorld train clips (mp4 + ground-truth CoT)."""
    folder = tmp_path_factory.mktemp("prompts")
    write_split("train", folder, 2, WorldConfig(duration=2.0, width=48, height=48))
    return folder


def _config(model_dir: Path, prompt_dir: Path, out: Path, **kw) -> GrpoConfig:
    base = dict(model=str(model_dir), out=str(out), prompts=str(prompt_dir), eval_prompts=str(prompt_dir))
    base |= dict(clips=2, eval_clips=1, iterations=2, group=3, steps=4, window=2, minibatch=2, eval_every=0)
    return GrpoConfig(**(base | dict(lr=1e-3, clip_range=0.2, bench=BenchCheck(clips=0)) | kw))


def _steps(result: dict) -> list[dict]:
    """The train entries of a run's log (the loop logs evaluations as entries of their own)."""
    return [h for h in result["history"] if h["phase"] == "train"]


# ------------------------------------------------------------------------------------ the objective


def test_rollout_log_probs_are_the_gaussian_density_of_the_sde_step(model_dir, prompt_dir):
    bundle = load_bundle(model_dir)
    cfg = _config(model_dir, prompt_dir, Path("unused"), logprob_reduce="sum")
    prompt = load_prompts(prompt_dir, bundle, 1)[0]
    policy = build_policy(bundle, cfg)
    group = collect_rollouts(policy, bundle, prompt, cfg, (1, 2), noise_generator(0, 0, 0, 0, torch.device("cpu")))
    velocity = guided_velocity(policy.network(), prompt, cfg.group, cfg.cfg, cfg.guidance_interval, cfg.video_cfg)
    for step in group.steps:
        t, t_next, x = float(step["t"]), float(step["t_next"]), step["x"]
        with torch.no_grad():
            v = velocity(x, torch.full((cfg.group,), t))
        sigma, dt = float(sde_sigma(t, t_next, cfg.noise_level)), t_next - t
        mean = x + (v + sigma**2 / (2 * t) * (x + (1 - t) * v)) * dt  # REFERENCE "The SDE", written out
        direct = torch.distributions.Normal(mean, sigma * np.sqrt(-dt)).log_prob(step["x_next"]).flatten(1).sum(1)
        torch.testing.assert_close(step["old_log_prob"], direct, rtol=1e-5, atol=1e-2)
    assert [s["t"] for s in group.steps] == [group.steps[0]["t"], group.steps[1]["t"]] and len(group.steps) == 2
    assert group.audio.shape == (cfg.group, prompt.prepared.n_samples, 2)


def test_a_shared_prefix_group_starts_its_window_from_one_state(model_dir, prompt_dir):
    bundle = load_bundle(model_dir)
    cfg = _config(model_dir, prompt_dir, Path("unused"), shared_prefix=True)
    prompt = load_prompts(prompt_dir, bundle, 1)[0]
    policy = build_policy(bundle, cfg)
    group = collect_rollouts(policy, bundle, prompt, cfg, (1, 2), noise_generator(0, 0, 0, 0, torch.device("cpu")))
    first = group.steps[0]["x"]
    assert first.shape[0] == cfg.group and torch.equal(first, first[:1].expand_as(first))
    assert float((group.steps[0]["x_next"] - group.steps[0]["x_next"][:1]).abs().max()) > 0  # parted by the SDE
    assert float(np.abs(group.audio - group.audio[:1]).max()) > 0
    plain = collect_rollouts(
        policy,
        bundle,
        prompt,
        _config(model_dir, prompt_dir, Path("unused"), shared_prefix=False),
        (1, 2),
        noise_generator(0, 0, 0, 0, torch.device("cpu")),
    )
    assert float((plain.steps[0]["x"] - plain.steps[0]["x"][:1]).abs().max()) > 0  # independent starts


def test_group_advantages_in_exact_cases():
    adv, total = group_advantages({"semantic": torch.tensor([1.0, 0.0, 0.5, 0.5])}, {"semantic": 1.0})
    torch.testing.assert_close(adv, torch.tensor([2**0.5, -(2**0.5), 0.0, 0.0]), atol=1e-5, rtol=0)
    rewards = {"semantic": torch.tensor([0.0, 1.0, 0.0, 1.0]), "temporal": torch.tensor([0.0, 0.0, 0.1, 0.1])}
    weights = {"semantic": 1.0, "temporal": 1.0}
    plain, total = group_advantages(rewards, weights)
    torch.testing.assert_close(total, torch.tensor([0.0, 0.5, 0.05, 0.55]))
    normed, _ = group_advantages(rewards, weights, per_reward_norm=True)
    assert float(plain[2] - plain[0]) < 0.3 < float(normed[2] - normed[0])  # the small-spread reward counts
    torch.testing.assert_close(normed, torch.tensor([-1.0, 0.0, 0.0, 1.0]) * 2**0.5, atol=1e-4, rtol=0)
    outlier, _ = group_advantages({"semantic": torch.tensor([1.0] + [0.0] * 99)}, {"semantic": 1.0}, clip=5.0)
    assert float(outlier[0]) == 5.0
    flat, _ = group_advantages({"semantic": torch.full((4,), 0.3)}, {"semantic": 1.0})
    assert torch.equal(flat, torch.zeros(4))


def test_clipped_surrogate_and_kl_in_exact_cases():
    lp, old = torch.tensor([0.1, -0.1, 0.0]), torch.zeros(3)
    adv = torch.tensor([1.0, 1.0, -2.0])
    loss, frac, _ = clipped_surrogate(lp, old, adv, clip_range=0.05)
    # r = e^0.1 clipped to 1.05 (A > 0); r = e^-0.1 kept (min with the clipped 0.95); r = 1: -2
    assert float(loss) == pytest.approx(-(1.05 + np.exp(-0.1) - 2.0) / 3, abs=1e-6)  # float32
    assert float(frac) == pytest.approx(2 / 3)
    m, m_ref, std = torch.randn(2, 3, 4), torch.randn(2, 3, 4), torch.tensor([0.3, 0.7])
    direct = torch.distributions.kl_divergence(
        torch.distributions.Normal(m, std[:, None, None]), torch.distributions.Normal(m_ref, std[:, None, None])
    )
    torch.testing.assert_close(gaussian_kl(m, m_ref, std, "sum"), direct.flatten(1).sum(1))
    torch.testing.assert_close(gaussian_kl(m, m_ref, std, "mean"), direct.flatten(1).mean(1))


def test_windows_move_every_iteration_and_differ_between_processes():
    starts = np.array([[draw_window(24, 2, 0, it, p)[0] for it in range(40)] for p in range(2)])  # (P, I)
    assert starts.min() >= 0 and starts.max() <= 22 and len(np.unique(starts[0])) > 10
    assert (starts[0] != starts[1]).mean() > 0.8
    assert all(draw_window(24, 24, 0, it, p) == (0, 24) for it in range(5) for p in range(2))  # Flow-GRPO
    assert draw_window(24, 2, 0, 7, 1) == draw_window(24, 2, 0, 7, 1)  # a pure function (resumable)


# ---------------------------------------------------------------------------------------- training


def _count_policy_evals(monkeypatch) -> list[int]:
    """Rows of every generator evaluation made with gradients (the policy's, not the reference's): a guided
    pass (two or three branches) counts its B rows once; a conditional-only pass (outside the guidance
    interval) its own rows."""
    counted: list[int] = []
    branches, single, in_branches = Generator.velocity_branches, Generator.velocity, []

    def counting_branches(self, x, t, conds):
        if torch.is_grad_enabled():
            counted.append(x.shape[0])
        in_branches.append(True)
        try:
            return branches(self, x, t, conds)
        finally:
            in_branches.pop()

    def counting_single(self, x, t, cond):
        if torch.is_grad_enabled() and not in_branches:
            counted.append(x.shape[0])
        return single(self, x, t, cond)

    monkeypatch.setattr(Generator, "velocity_branches", counting_branches)
    monkeypatch.setattr(Generator, "velocity", counting_single)
    return counted


@pytest.mark.parametrize("window", [2, 4])  # Fast-GRPO (w = 2 of 4 steps), Flow-GRPO (every step)
def test_policy_evaluations_per_sample_equal_the_window(model_dir, prompt_dir, tmp_path, monkeypatch, window):
    counted = _count_policy_evals(monkeypatch)
    cfg = _config(model_dir, prompt_dir, tmp_path / "run", iterations=1, window=window)
    result = train_grpo(cfg, resume=False)
    entry = _steps(result)[-1]
    assert entry["policy_nfe_per_sample"] == window == sum(counted) / cfg.group
    assert cfg.method == ("flow-grpo" if window == 4 else "fast-grpo")
    for key in ("reward_semantic", "reward_temporal", "reward_aesthetic", "reward_spatial", "reward_weighted"):
        assert 0.0 <= entry[key] <= 1.0
    assert entry["kl"] >= 0.0 and 0.0 <= entry["clip_frac"] <= 1.0 and entry["seconds"] > 0
    assert load_bundle(tmp_path / "run").generator.config == load_bundle(model_dir).generator.config


def test_lora_reference_is_the_base_with_adapters_disabled(model_dir, prompt_dir):
    bundle = load_bundle(model_dir)
    prompt = load_prompts(prompt_dir, bundle, 1)[0]
    cfg = _config(model_dir, prompt_dir, Path("unused"), lora_rank=4)
    policy = build_policy(bundle, cfg)
    assert policy.lora and policy._reference == (None,)  # no second copy of the generator
    trainable = {n for n, p in policy.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    with torch.no_grad():
        for n, p in policy.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5)  # adapters that change the output (B starts at zero)
        x, t = torch.randn(2, bundle.generator.config.latent_dim, prompt.n_latent), torch.full((2,), 0.6)
        base = guided_velocity(bundle.generator, prompt, 2, cfg.cfg, cfg.guidance_interval, cfg.video_cfg)(x, t)
        ref_velocity, context = policy.reference_velocity(prompt, 2)
        with context():
            ref = ref_velocity(x, t)
        adapted = guided_velocity(policy.network(), prompt, 2, cfg.cfg, cfg.guidance_interval, cfg.video_cfg)(x, t)
    torch.testing.assert_close(ref, base)
    assert (adapted - base).abs().max() > 1e-3


def test_split_guidance_of_the_rollouts_is_the_render_s(model_dir, prompt_dir):
    """`guided_velocity` with a video scale: v_u + s (v_t - v_u) + s_v (v_c - v_t), v_t the text-only branch;
    at s_v = s it is plain guidance; rollouts use the render defaults."""
    bundle = load_bundle(model_dir)
    gen, prompt = bundle.generator, load_prompts(prompt_dir, bundle, 1)[0]
    with torch.no_grad():
        x, t = torch.randn(2, gen.config.latent_dim, prompt.n_latent), torch.full((2,), 0.6)
        cond = gen.prepare_conditions(prompt.video_tokens, None, prompt.sync, prompt.text, prompt.n_latent).repeat(2)
        v_c, v_t = gen.velocity(x, t, cond), gen.velocity(x, t, gen.text_only_like(cond))
        plain = guided_velocity(gen, prompt, 2, 3.5)(x, t)
        split = guided_velocity(gen, prompt, 2, 3.5, video_cfg=5.0)(x, t)
        torch.testing.assert_close(guided_velocity(gen, prompt, 2, 3.5, video_cfg=3.5)(x, t), plain)
    torch.testing.assert_close(split, plain + 1.5 * (v_c - v_t), atol=1e-4, rtol=1e-4)
    assert (split - plain).abs().max() > 1e-4
    from engine.pipeline import RenderSettings

    defaults = RenderSettings()
    cfg = _config(model_dir, prompt_dir, Path("x"))
    assert (cfg.video_cfg, cfg.declick, cfg.gate, cfg.cfg) == (
        defaults.video_cfg,
        defaults.declick,
        defaults.gate,
        defaults.cfg,
    )


def test_resume_continues_exactly(model_dir, prompt_dir, tmp_path):
    straight = train_grpo(_config(model_dir, prompt_dir, tmp_path / "a", lora_rank=4), resume=False)
    first = train_grpo(_config(model_dir, prompt_dir, tmp_path / "b", lora_rank=4, stop_at=1), resume=False)
    assert not first["finished"] and first["iterations"] == 1
    resumed = train_grpo(_config(model_dir, prompt_dir, tmp_path / "b", lora_rank=4), resume=True)
    assert resumed["resumed_from"] == 1 and resumed["finished"]
    a, b = straight["policy"].state_dict(), resumed["policy"].state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    last_a, last_b = _steps(straight)[-1], _steps(resumed)[-1]
    assert last_a["reward_weighted"] == last_b["reward_weighted"] and last_a["loss"] == last_b["loss"]
    ga, gb = load_bundle(tmp_path / "a").generator.state_dict(), load_bundle(tmp_path / "b").generator.state_dict()
    assert all(torch.equal(ga[k], gb[k]) for k in ga)  # the saved EMA models too
    with pytest.raises(Exception, match="no-resume"):
        train_grpo(_config(model_dir, prompt_dir, tmp_path / "b", lora_rank=4, group=4, iterations=3), resume=True)


def test_time_limit_ends_the_run_evaluated_with_its_model(model_dir, prompt_dir, tmp_path):
    cfg = _config(model_dir, prompt_dir, tmp_path / "t", iterations=5, max_minutes=1e-6)
    result = train_grpo(cfg, resume=False)
    assert result["finished"] and result["iterations"] == 1 and result["stopped"] == "time limit of 1e-06 minutes"
    assert "eval_weighted" in result["history"][-1]  # the last iteration is evaluated, as at a normal end
    trained = load_bundle(tmp_path / "t").generator.state_dict()  # and the model is written
    start = load_bundle(model_dir).generator.state_dict()
    assert any(not torch.equal(start[k], trained[k]) for k in start)
    again = train_grpo(cfg, resume=True)  # resuming it does not train past the limit
    assert again["finished"] and again["iterations"] == again["resumed_from"] == 1
    assert again["history"] == result["history"] and again["stopped"] == result["stopped"]  # the checkpoint's record
    assert train_grpo(_config(model_dir, prompt_dir, tmp_path / "n"), resume=False)["stopped"] is None


def test_the_foleybench_guard_checks_the_ema_model_it_writes(model_dir, prompt_dir, tmp_path, monkeypatch):
    """train_grpo itself runs the guard (the command line and the studio alike): the start model against the
    EMA generator it then writes, the verdict in the result, the manifest and the log."""
    import trainer.grpo.learn as learn
    from engine.bundle import MANIFEST

    seen = {}

    def fake_guard(base, tuned, check, folder, step, progress):
        seen.update(base=base.generator.state_dict(), tuned=tuned.generator.state_dict(), check=check, step=step)
        return {"passed": False, "drops": {"clap": 0.25}, "worst": "clap"}

    monkeypatch.setattr(learn, "guard", fake_guard)
    check = BenchCheck(clips=2, duration=2.0, steps=2)
    result = train_grpo(_config(model_dir, prompt_dir, tmp_path / "g", iterations=1, bench=check), resume=False)
    assert result["bench_check"]["passed"] is False and seen["check"] == check and seen["step"] == 1
    written = load_bundle(tmp_path / "g").generator.state_dict()
    start = load_bundle(model_dir).generator.state_dict()
    assert all(torch.equal(seen["tuned"][k], written[k]) for k in written)
    assert all(torch.equal(seen["base"][k], start[k]) for k in start)
    assert json.loads((tmp_path / "g" / MANIFEST).read_text())["extra"]["bench_check"]["drops"] == {"clap": 0.25}
    last = json.loads((tmp_path / "g" / "train_log.jsonl").read_text().splitlines()[-1])
    assert last == {"step": 1, "phase": "bench", "passed": False, "drops": {"clap": 0.25}, "steps": 1}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow  # two fresh Python processes: ~20 s on 2 cores
def test_two_processes_end_a_step_with_identical_weights(model_dir, prompt_dir, tmp_path):
    env = os.environ | {"ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port())]
    cmd += [str(ROOT / "tests" / "grpo_worker.py"), str(model_dir), str(prompt_dir), str(tmp_path)]
    run = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    reports = [json.loads((tmp_path / f"process{p}.json").read_text()) for p in range(2)]
    assert reports[0]["digest"] == reports[1]["digest"]
    start = load_bundle(model_dir).generator.state_dict()
    trained = load_bundle(tmp_path).generator.state_dict()
    assert any(not torch.equal(start[k], trained[k]) for k in start)  # the step did change the weights
    assert len(reports[0]["window_starts"]) == 2  # one window per process, gathered into the log


def test_config_rejects_bad_values(model_dir, prompt_dir):
    from engine.errors import UserInputError

    bads = (
        dict(group=1),
        dict(weights={"semantic": -1.0}),
        dict(logprob_reduce="max"),
        dict(max_minutes=0),
        dict(window=0),
        dict(video_cfg=-1.0),
    )
    for bad in bads:
        with pytest.raises(UserInputError):
            replace(_config(model_dir, prompt_dir, Path("x")), **bad)


def test_train_grpo_command_and_a_plain_video_folder(model_dir, prompt_dir, tmp_path, capsys):
    from engine.cot import Cot
    from tests.test_pipeline import _cli
    from trainer.grpo.prompts import load_prompts

    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("train_000000", "train_000001"):
        (videos / f"{name}.mp4").write_bytes((prompt_dir / f"{name}.mp4").read_bytes())
    side = Cot("a ball bounces on wood", "three hits", "dry", "left")
    (videos / "train_000000.cot.json").write_text(json.dumps(side.to_dict()))
    with pytest.warns(UserWarning, match="fallback"):
        prompts = load_prompts(videos, load_bundle(model_dir))  # no planner in the tiny model
    assert prompts[0].cot == side and "fallback" in prompts[1].cot.semantic
    args = ["train", "grpo", "--model", model_dir, "--prompts", prompt_dir, "--eval-prompts", prompt_dir]
    args += ["--prompt-clips", "2", "--eval-clips", "1", "--iterations", "1", "--group", "2", "--sample-steps", "3"]
    args += ["--bench-clips", "0"]
    rc, out, err = _cli(*args, "--window", "1", "--out", tmp_path / "run", "--threads", "1", capsys=capsys)
    assert rc == 0, err
    line = json.loads(out)
    assert line["method"] == "fast-grpo" and line["finished"] and line["last"]["policy_nfe_per_sample"] == 1
    assert "grpo 1/1" in err
    rc, out, err = _cli(*args, "--group", "1", "--out", tmp_path / "bad", capsys=capsys)
    assert rc == 2 and err.startswith("error:") and len(err.strip().splitlines()) == 1
    # the run's own log reads as a reward-time curve (here compared with itself)
    run = str(tmp_path / "run")
    rc, out, err = _cli("bench", "--grpo-runs", f"{run},{run}", "--figure", tmp_path / "f.png", capsys=capsys)
    report = json.loads(out)
    assert rc == 0 and report["fast"]["policy_nfe_per_sample"] == 1 and report["fast"]["iterations"] == 1
    assert 0 <= report["time_share"] <= 1 and (tmp_path / "f.png").read_bytes()[:4] == b"\x89PNG"


def _log(folder: Path, evals: list[tuple[float, float]], window: int, nfe: float) -> Path:
    folder.mkdir(parents=True)
    lines = [{"iteration": 0, "train_seconds": 0.0, "eval_weighted": evals[0][1]}]
    for k, (sec, reward) in enumerate(evals[1:], 1):
        lines.append({"iteration": k, "window": window, "policy_nfe_per_sample": nfe, "train_seconds": sec})
        lines[-1]["eval_weighted"] = reward
    (folder / "train_log.jsonl").write_text("".join(json.dumps(e) + "\n" for e in lines))
    return folder


def test_fast_against_flow_reads_the_time_to_flows_final_reward(tmp_path):
    from engine.errors import UserInputError
    from trainer.grpo.compare import compare, figure

    fast = _log(tmp_path / "fast", [(0, 0.50), (10, 0.55), (20, 0.61), (30, 0.63)], 2, 2.0)
    flow = _log(tmp_path / "flow", [(0, 0.50), (40, 0.56), (80, 0.60)], 24, 24.0)
    r = compare(fast, flow)
    assert r["flow_final_reward"] == 0.60 and r["fast_seconds_to_flow_final"] == 20 and r["time_share"] == 0.25
    assert r["fast"]["policy_nfe_per_sample"] == 2 and r["flow"]["window"] == 24 and r["flow"]["train_seconds"] == 80
    # through a trailing mean of two evaluations Flow ends at 0.58 and Fast first reaches it at 20 s (0.58)
    r2 = compare(fast, flow, smooth=2)
    assert np.isclose(r2["flow_final_reward"], 0.58) and r2["fast_seconds_to_flow_final"] == 20
    slow = _log(tmp_path / "slow", [(0, 0.50), (100, 0.52)], 2, 2.0)
    assert compare(slow, flow)["time_share"] is None  # never reached
    assert figure(fast, flow, tmp_path / "c.png").stat().st_size > 1000
    with pytest.raises(UserInputError, match="evaluations"):
        compare(_log(tmp_path / "one", [(0, 0.5)], 2, 2.0), flow)
