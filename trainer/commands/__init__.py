"""The training commands of ``launch.py``: ``world`` and ``train METHOD`` (one module per method), and the
``bench`` modes that need the trainer's data (``bench_modes``: ``speed``, ``grpo-runs``).

`with_training` adds them to the engine's command table (`engine.commands.COMMANDS`); ``common`` holds the
progress printers and the options that several methods share (LoRA runs, the FoleyBench check). Each method
module has ``build(parser)`` (its own options, defaults from its config dataclass) and a ``run(args)``.
May import ``engine``; never ``app`` (``train dpo --project`` gets its pairs through ``args.project_pairs``,
which ``launch.py`` provides from the studio's side).
"""

from __future__ import annotations

# name -> (module[:build function], one-line help): `engine.commands.add_commands` builds the one named
TRAIN = {
    "metrics": ("trainer.commands.metrics", "the FoleyBench metric models"),
    "codec": ("trainer.commands.codec", "the stereo audio codec"),
    "features": ("trainer.commands.features", "the generator's feature cache"),
    "pretrain": ("trainer.commands.pretrain", "the generator and video encoder (builds missing features first)"),
    "planner": ("trainer.commands.planner", "the default planner"),
    "calibrate-planner": ("trainer.commands.calibrate_planner", "a planner's per-class reading thresholds"),
    "grpo": ("trainer.commands.grpo", "Fast-GRPO (or Flow-GRPO) with the four reward heads"),
    "ingest": ("trainer.commands.ingest", "videos and tagged sounds -> a training dataset"),
    "finetune": ("trainer.commands.finetune", "LoRA fine-tune on an ingested dataset"),
    "dpo": ("trainer.commands.dpo", "Flow-DPO on preference pairs"),
    "blend": ("trainer.commands.blend", "a tune at a strength between the start model and the tune"),
    "house": ("trainer.commands.house", "the procedural house library"),
    "measure": ("trainer.commands.measure", "house FD / CLAP~ and FoleyBench of a tuned model"),
    "measure-dpo": ("trainer.commands.measure_dpo", "pairs, DPO and the held-out reward of one dimension"),
    "recipe": ("trainer.commands.recipe", "the commands that made a shipped checkpoint (trainer.recipes)"),
}
BENCH_MODES = {
    "speed": ("trainer.commands.bench_modes:build_speed", "end-to-end render time of a 9 s FoleyWorld clip"),
    "grpo-runs": ("trainer.commands.bench_modes:build_grpo_runs", "held-out reward against time of two GRPO runs"),
}


def with_training(commands: dict) -> dict:
    """``commands`` (the engine's table) with ``world``, ``train`` and the trainer's ``bench`` modes."""
    table = dict(commands)
    module, text, modes = table["bench"]
    table["bench"] = (module, text, modes | BENCH_MODES)
    table["world"] = ("trainer.commands.world", "write a FoleyWorld split or time the generator")
    table["train"] = ("", "training commands (train METHOD --help: its options)", TRAIN)
    return table
