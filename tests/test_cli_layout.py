"""The command layer: a thin launch.py, subcommands with only their own flags, defaults from the config
dataclasses, and every old spelling of DESIGN's command-line contract still parsing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import launch  # noqa: E402
from engine.commands.fields import field_help, fields_of  # noqa: E402


def parse(line: str):
    argv = line.split()
    return launch.build_parser(argv).parse_args(argv)


def help_of(*args: str) -> list[str]:
    env = {**os.environ, "COLUMNS": "80", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "launch.py"), *args, "--help"], capture_output=True, text=True, env=env, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


def test_launch_only_dispatches():
    assert len((ROOT / "launch.py").read_text().splitlines()) <= 150


@pytest.mark.parametrize(
    "method,own,foreign",
    [
        ("grpo", ["--sample-steps", "--prompt-clips", "--window", "--flow", "--kl"], ["--house-per-class", "--tuned"]),
        ("codec", ["--codec", "--steps", "--batch", "--lr", "--preset"], ["--prompt-clips", "--house-per-class"]),
    ],
)
def test_a_method_prints_only_its_own_flags(method, own, foreign):
    lines = help_of("train", method)
    text = "\n".join(lines)
    assert len(lines) <= 80
    assert all(flag in text for flag in own)
    assert not any(flag in text for flag in foreign)


CONTRACT = [  # DESIGN "Command-line contract" and the documented spellings
    "render a.mp4 b.mp4 --out o --cot c.json --seed 3 --steps 8 --cfg 4 --candidates 2 "
    "--weights semantic=1,temporal=0.6,aesthetic=0.1,spatial=0.4 --mux --model default",
    "plan a.mp4",
    "score a.mp4 take.wav --cot c.json",
    "codec take.wav --out o.wav --model default",
    "bench --split test-multi --limit 5 --model default",
    "bench --split val --limit 30 --rows ground_truth,model --model default --cfg 3.5 --rescale 0.5",
    "bench --split test-single --limit 200 --planner",
    "bench --split test-single --limit 100 --time-shift 0.5",
    "bench --rewards --split test-single --data d --rows ground_truth,model --model default",
    "bench --speed 5 --no-gate",
    "bench --grpo-runs a,b --smooth 5 --figure f.png",
    "world --split test-single --count 200 --out data/test-single --no-video",
    "world --speed --count 50",
    "train pretrain --cache c --clips 2560 --steps 3000 --batch 16 --lr 5e-4 --warmup 200 --timeline --threads 2",
    "train finetune --dataset d --out o --lr 1e-4 --steps 1000 --max-minutes 50 --bench-clips 0 --guided-targets",
    "train grpo --iterations 5 --prompt-clips 8 --eval-clips 2 --group 8 --sample-steps 12 --no-resume --flow",
    "train dpo --pairs p.json --out o --beta 2000",
    "train codec --steps 1300 --batch 16",
    "train metrics --clips 1200 --house-per-class 100 --out j",
    "train planner --layout columns --channels 24,48,80 --width 96 --flip --steps 3000",
    "train features --first-scene 2560 --clips 2560 --cues c.safetensors --cache c",
    "train measure --house h --tuned t --bench-clips 0 --threads 2 --seed 1000",
    "train measure-dpo --dimension temporal --pair-clips 24 --steps 200 --batch 4 --duration 5",
    "train recipe base",
]


@pytest.mark.parametrize("line", CONTRACT)
def test_old_invocations_parse(line):
    args = parse(line)
    assert callable(args.func)
    full = launch.build_parser().parse_args(line.split())  # every command built: the same result
    assert vars(full) == vars(args)


def test_old_bench_flags_choose_their_mode():
    assert parse("bench --speed 3").runs == 3
    assert parse("bench --grpo-runs a,b").runs == "a,b"
    assert parse("bench --time-shift 0.5").time_shift == 0.5
    assert parse("bench --rewards").rewards is True and parse("bench").rewards is False
    assert parse("bench --planner").func.__name__ == "run_planner"
    assert parse("bench speed --runs 2").func is parse("bench --speed 2").func


def test_defaults_come_from_the_configs():
    from engine.pipeline import RenderSettings
    from trainer.finetune import FinetuneConfig
    from trainer.grpo.learn import GrpoConfig
    from trainer.planner.train import PlannerTrainConfig

    grpo = parse("train grpo")
    assert GrpoConfig(**fields_of(grpo, GrpoConfig) | {"out": GrpoConfig.out}) == GrpoConfig()
    planner = parse("train planner")
    assert PlannerTrainConfig(**fields_of(planner, PlannerTrainConfig)) == PlannerTrainConfig()
    tune = parse("train finetune --dataset d")
    assert FinetuneConfig(**fields_of(tune, FinetuneConfig)) == FinetuneConfig(dataset="d")
    from engine.commands.render import _inputs

    render = parse("render a.mp4 --out o")  # --cfg is left open on the line: 5 with --features, else the settings'
    settings = _inputs(render)[4]
    assert (settings.steps, settings.cfg, render.cfg) == (RenderSettings.steps, RenderSettings.cfg, None)
    flow = parse("train grpo --flow --sample-steps 6 --batch 2 --prompt-clips 3")
    assert (flow.steps, flow.minibatch, flow.clips) == (6, 2, 3)  # renamed flags reach their fields


def test_help_is_the_fields_comment_with_its_continuation():
    from trainer.pretrain import PretrainConfig

    text = field_help(PretrainConfig, "recue")
    assert text.startswith("with init: the cache's sync cues") and text.endswith("the run re-learns them")


def test_recipe_prints_its_lines_and_run_stops_at_the_first_failure(tmp_path, monkeypatch, capsys):
    import trainer.recipes

    marker = tmp_path / "second"
    lines = ["python -c 'import sys; sys.exit(3)'", f"python -c 'open({str(marker)!r}, \"w\")'"]
    monkeypatch.setattr(trainer.recipes, "recipe_commands", lambda name: lines)
    assert launch.main(["train", "recipe", "x"]) == 0
    assert capsys.readouterr().out.splitlines() == lines
    assert launch.main(["train", "recipe", "x", "--run"]) == 3
    assert not marker.exists()


def test_an_unknown_recipe_is_one_line(capsys):
    assert launch.main(["train", "recipe", "no-such-recipe"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "no-such-recipe" in err[0]


def test_codec_writes_the_reconstruction_at_the_codecs_rate(tmp_path, capsys):
    import json

    import numpy as np
    import soundfile as sf

    from engine.bundle import save_bundle
    from tests.bundles import tiny_bundle

    model = save_bundle(tiny_bundle(), tmp_path / "tiny")
    t = np.arange(24000) / 48000  # 0.5 s at 48 kHz: resampled to the codec's 44.1 kHz first
    sf.write(tmp_path / "in.wav", 0.3 * np.stack([np.sin(2 * np.pi * 440 * t)] * 2, 1), 48000)
    out = tmp_path / "out.wav"
    assert launch.main(["codec", str(tmp_path / "in.wav"), "--out", str(out), "--model", str(model)]) == 0
    line = json.loads(capsys.readouterr().out)
    audio, sr = sf.read(out, always_2d=True)
    assert sr == line["sample_rate"] == 44100 and audio.shape == (22050, 2) == (line["samples"], 2)
    assert launch.main(["codec", str(tmp_path / "in.wav"), "--out", str(tmp_path / "o.mp3")]) == 2


def test_dpo_project_pairs_come_from_the_entry_point(tmp_path, monkeypatch):
    import trainer.dpo

    seen = {}

    def fake_pairs(project, path):
        seen["project"], seen["path"] = project, path
        return path

    def fake_dpo(cfg, progress, resume):
        seen["pairs"] = cfg.pairs
        return {"out": cfg.out}

    monkeypatch.setattr(launch, "project_pairs", fake_pairs)
    monkeypatch.setattr(trainer.dpo, "train_dpo", fake_dpo)
    assert launch.main(["train", "dpo", "--project", "demo", "--out", str(tmp_path)]) == 0
    assert seen == {"project": "demo", "path": tmp_path / "pairs_source.json", "pairs": str(seen["path"])}
