"""The studio app (Gradio), started by ``python launch.py``.

This version serves the FoleyWorld page: draw any clip of any split, watch it, read its four CoT
blocks, inspect its stereo spectrogram and score its audio with FoleyBench. Rendering pages join it
as the engine lands.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import gradio as gr

HOST = os.environ.get("FOLEY_HOST", "127.0.0.1")  # local only unless told otherwise
PORT = int(os.environ.get("FOLEY_PORT", "7860"))
SPLITS = ["test-single", "test-multi", "val", "train"]


def world_clip(split: str, index: float, duration: float, out_dir: str) -> dict:
    """Generate one FoleyWorld clip into ``out_dir``: paths, CoT blocks, figure and scores."""
    from engine.bench.run import clip_scores, load_metric_models
    from engine.errors import UserInputError
    from engine.text_encoder import encode_sentences
    from trainer.foleyworld.scene import WorldConfig
    from trainer.foleyworld.splits import make_clip, write_clip

    from .plots import stereo_spectrogram

    if split not in SPLITS:
        raise UserInputError(f"unknown split {split!r}")
    if index is None or index < 0 or int(index) != index:
        raise UserInputError("the clip index must be a whole number, 0 or more")
    if not 2.0 <= float(duration) <= 12.0:
        raise UserInputError("the duration must be between 2 and 12 seconds")
    clip = make_clip(split, int(index), WorldConfig(duration=float(duration)))
    meta = write_clip(clip, Path(out_dir), video=True)
    sr = clip.scene.config.sample_rate
    audio = clip.audio.audio
    scores = clip_scores(audio, sr, meta, load_metric_models(), encode_sentences([meta["cot"]["semantic"]])[0])
    fig = stereo_spectrogram(
        audio, sr, f"{meta['name']}: {', '.join(meta['classes'])}", [e["time"] for e in meta["events"]]
    )
    keys = ["class_acc", "clap", "desync", "x_mse", "quality", "loudness"]
    table = [[k, round(float(scores[k]), 3)] for k in keys]
    return {"video": str(Path(out_dir) / f"{meta['name']}.mp4"), "cot": meta["cot"], "figure": fig, "scores": table}


def build_app(out_dir: str | None = None) -> gr.Blocks:
    """The studio's Blocks (not launched); generated clips go to ``out_dir`` (a new temp folder by default)."""
    from engine.errors import UserInputError

    out_dir = out_dir or tempfile.mkdtemp(prefix="foley-world-")
    with gr.Blocks(title="Foley Studio") as demo:
        gr.Markdown("# Foley Studio\nFoleyWorld: procedural clips with exact ground truth, scored by FoleyBench.")
        with gr.Row():
            split = gr.Dropdown(SPLITS, value="test-multi", label="split")
            index = gr.Number(value=0, precision=0, label="clip index", minimum=0)
            duration = gr.Slider(2, 12, value=9, step=0.5, label="duration (s)")
            go = gr.Button("Draw clip", variant="primary")
        with gr.Row():
            video = gr.Video(label="clip", interactive=False)
            with gr.Column():
                blocks = [
                    gr.Textbox(label=name.capitalize(), lines=2, interactive=False)
                    for name in ("semantic", "temporal", "aesthetic", "spatial")
                ]
        plot = gr.Plot(label="stereo spectrogram (cyan: ground-truth events)")
        scores = gr.Dataframe(headers=["metric", "value"], label="FoleyBench (ground-truth audio)")

        def on_draw(s, i, d, progress=gr.Progress()):  # noqa: B008 - how Gradio injects progress
            progress(0.1, desc="synthesising")
            try:
                r = world_clip(s, i, d, out_dir)
            except UserInputError as exc:
                raise gr.Error(str(exc)) from None
            c = r["cot"]
            return [r["video"], c["semantic"], c["temporal"], c["aesthetic"], c["spatial"], r["figure"], r["scores"]]

        go.click(on_draw, [split, index, duration], [video, *blocks, plot, scores])
    return demo


def launch_studio() -> int:
    """Serve the studio on HOST:PORT (127.0.0.1:7860 by default)."""
    out_dir = tempfile.mkdtemp(prefix="foley-world-")
    demo = build_app(out_dir)
    demo.queue().launch(server_name=HOST, server_port=PORT, allowed_paths=[out_dir])  # serve only its own clips
    return 0
