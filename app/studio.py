"""The studio app (Gradio), started by ``python launch.py``.

Pages (tabs): **Studio**, the authoring page (projects, import, plan and edit, weights and settings,
takes, compare, export; every control calls one method of `app.studio_actions.StudioActions`), **Train**
(the project's dataset, LoRA fine-tune / Fast-GRPO / Flow-DPO runs with live progress and curves, the
resulting models; `app.train_actions.TrainActions`) and **FoleyWorld** (draw a procedural clip with its
ground truth and score it with FoleyBench).

The page layout lives here and nothing else: components are registered under names, and an action's
result (a dict from names to values) is mapped back onto them, leaving unnamed outputs untouched.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import secrets
import shutil
import signal
import sys
import tempfile
import threading
from pathlib import Path

import gradio as gr
from starlette.middleware import Middleware

from app.projects import SOUND_TYPES
from app.settings import StudioSettings
from app.studio_actions import EXPORT_FORMATS, FIELDS, LIMITS, MAX_SEED, TAKE_HEADERS, StudioActions, as_text
from app.train_actions import METHOD_CHOICES, RUN_HEADERS, SOUND_HEADERS, TRAIN_FIELDS

log = logging.getLogger("foley.studio")
SPLITS = ["test-single", "test-multi", "val", "train"]
DIMENSIONS = ("semantic", "temporal", "aesthetic", "spatial")  # the sliders, in CoT order (engine.rewards)
CSS = """
#studio-message { min-height: 1.6em; }
"""
# Late views never overwrite typing: an action's new CoT blocks reach the page as an envelope {id, sent: what
# each field held when the request started, new: the action's text (null: not changed)} in a hidden box, and
# this runs in the browser after it: a field takes the new text only if it still holds what was sent, so
# whatever the designer typed while the request ran stays. Each envelope is applied once.
MERGE_JS = f"""(...args) => {{
  const now = args.slice(0, {len(FIELDS)});
  let env = null;
  try {{ env = args[{len(FIELDS)}] ? JSON.parse(args[{len(FIELDS)}]) : null; }} catch (e) {{ env = null; }}
  const seen = (window.__foleyMerged = window.__foleyMerged || new Set());
  if (!env || seen.has(env.id)) return now;
  seen.add(env.id);
  return now.map((v, k) => (env.new[k] !== null && (v ?? "") === (env.sent[k] ?? "")) ? env.new[k] : v);
}}"""


def world_clip(split: str, index: float, duration: float, out_dir: str) -> dict:
    """Generate one FoleyWorld clip into ``out_dir``: paths, CoT blocks, figure and scores."""
    from app.plots import stereo_spectrogram
    from engine.bench.run import clip_scores, load_metric_models
    from engine.errors import UserInputError
    from engine.text_encoder import encode_sentences
    from trainer.foleyworld.scene import WorldConfig
    from trainer.foleyworld.splits import make_clip, write_clip

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


def action_name(action) -> str:
    """'render take' for StudioActions.render_take (what an error message calls the action)."""
    return getattr(action, "__name__", "the action").replace("_", " ").strip()


class Page:
    """The named components of the studio page and the glue that runs actions on them."""

    def __init__(self, actions: StudioActions) -> None:
        self.actions = actions
        self.c: dict[str, gr.components.Component] = {}

    def add(self, name: str, component):
        self.c[name] = component
        return component

    def bind(
        self,
        trigger,
        action,
        inputs: list[str],
        outputs: list[str],
        *,
        progress: bool = False,
        session: bool = False,
        **kw,
    ):
        """Run ``action(*values of inputs)`` on ``trigger``; its dict result goes to ``outputs`` by name.

        ``progress``: the action also gets ``progress(fraction, text)``, drawn as a Gradio progress bar;
        ``session``: it gets the browser session's id as ``session`` (progress implies it).
        Messages are shown as plain text (`as_text`); new CoT blocks go through `MERGE_JS` (a field the
        designer changed while the action ran keeps the designer's text, which is then saved).
        """
        guard_cot = any(n in COT for n in outputs)  # new blocks go through the envelope (MERGE_JS)
        if guard_cot:
            outputs = [n for n in outputs if n not in COT] + ["cot_incoming"]
        comps = [self.c[n] for n in inputs]
        outs = [self.c[n] for n in outputs]
        watched = {self.c[n] for n in COT} if guard_cot else set()

        def apply(result: dict, data: dict | None = None):
            result = dict(result)
            if isinstance(result.get("message"), str):  # messages are plain text, never Markdown or HTML
                result["message"] = as_text(result["message"])
            if guard_cot:
                result["cot_incoming"] = envelope(result, data or {})
            values = [result.get(n, gr.skip()) for n in outputs]
            return values[0] if len(values) == 1 else tuple(values)

        def envelope(result: dict, data: dict) -> str:
            if not any(n in result for n in COT):
                return ""
            sent = [data.get(self.c[n]) or "" for n in COT]
            new = [result[n] if n in result else None for n in COT]
            return json.dumps({"id": secrets.token_hex(8), "sent": sent, "new": new})

        def guarded(call, data: dict, request: gr.Request):
            from engine.errors import UserInputError

            try:
                result = call()
            except UserInputError as exc:
                return apply({"message": f"⚠ {exc}"})
            except Exception as exc:  # noqa: BLE001 - the page's boundary: a message, and the trace in the log
                log.exception("%s failed", getattr(action, "__name__", "action"))
                return apply({"message": f"⚠ {action_name(action)} failed: {exc.__class__.__name__}: {exc}"})
            # the project this page has open now: the file route serves this browser its media (app.guard)
            project = result.get("project", data[self.c["project"]])
            self.actions.note_open(client_of(request), request.session_hash or "", project)
            return apply(result, data)

        def values(data: dict) -> list:
            return [data[c] for c in comps]

        if progress:

            def run(data: dict, request: gr.Request, bar=gr.Progress()):  # noqa: B008 - how Gradio injects it
                extra = {"session": request.session_hash or "", "progress": lambda f, d="": bar(f, desc=d)}
                return guarded(lambda: action(*values(data), **extra), data, request)

        elif session:

            def run(data: dict, request: gr.Request):
                return guarded(lambda: action(*values(data), session=request.session_hash or ""), data, request)

        else:

            def run(data: dict, request: gr.Request):
                return guarded(lambda: action(*values(data)), data, request)

        # inputs as a set: Gradio passes one dict {component: value}; the project state is always in it so
        # that the dict (and the positional request / progress arguments after it) always exist
        event = trigger(run, inputs={*comps, *watched, self.c["project"]}, outputs=outs, **kw)
        if not guard_cot:
            return event
        fields = [self.c[n] for n in COT]
        event = event.then(None, [*fields, self.c["cot_incoming"]], fields, js=MERGE_JS)
        # what the merge kept of the designer's typing is stored like any edit (nothing when nothing was kept)
        return self.bind(event.then, self.actions.save_cot, ["clip", *COT], ["message"])


def confirmed(action):
    """``action`` answered "yes" to its own question (called with ``confirmed=True``)."""

    @functools.wraps(action)
    def run(*args, **kw):
        return action(*args, confirmed=True, **kw)

    return run


def client_of(request: gr.Request) -> str:
    """The browser a request came from (`app.guard.CLIENT_COOKIE`; "" for a client without cookies)."""
    from app.guard import CLIENT_COOKIE

    raw = getattr(request, "request", None)  # the Starlette request Gradio wraps
    return raw.cookies.get(CLIENT_COOKIE, "") if raw is not None else ""


def _project_bar(page: Page) -> None:
    a = page.add
    with gr.Row(equal_height=False):
        a("project_pick", gr.Dropdown([], value=None, label="Project", scale=3, elem_id="project-pick"))
        a("project_name", gr.Textbox(label="Project name", scale=3, max_length=200, elem_id="project-name"))
        a("create_btn", gr.Button("Create", variant="primary", size="md", elem_id="create-project", scale=1))
        a("rename_btn", gr.Button("Rename", size="md", elem_id="rename-project", scale=1))
        a("delete_btn", gr.Button("Delete…", variant="stop", size="md", elem_id="delete-project", scale=1))
    with a("confirm_row", gr.Row(visible=False, elem_id="confirm-delete")):
        a("confirm_text", gr.Markdown(latex_delimiters=[]))
        a("confirm_yes", gr.Button("Yes, delete it", variant="stop", elem_id="confirm-yes"))
        a("confirm_no", gr.Button("Keep it", elem_id="confirm-no"))


def _clip_section(page: Page, settings: StudioSettings) -> None:
    a = page.add
    a("video", gr.Video(label="Video", interactive=False, height=300, elem_id="video"))
    a("media_info", gr.Markdown(elem_id="media-info"))
    a("original_audio", gr.Audio(label="Original audio", type="filepath", interactive=False, elem_id="original"))
    with gr.Row():
        types = list(settings.upload_types)
        label = f"Import a video ({', '.join(types)})"
        a("upload", gr.File(label=label, file_types=types, height=110, elem_id="upload", scale=3))
        a("clip_pick", gr.Dropdown([], value=None, label="Clip", elem_id="clip-pick", scale=2))


def _cot_section(page: Page) -> None:
    a = page.add
    with gr.Row(equal_height=True):
        gr.Markdown("### Plan and edit\nFour blocks; the planner's text is kept beside yours.")
        a("plan_btn", gr.Button("Plan", variant="primary", elem_id="plan", scale=0, min_width=120))
        a("undo_btn", gr.Button("Undo", elem_id="undo-blocks", scale=0, min_width=90))
    with a("plan_confirm_row", gr.Row(visible=False, elem_id="confirm-plan")):
        a("plan_confirm_text", gr.Markdown(latex_delimiters=[]))
        a("plan_yes", gr.Button("Replace my blocks", variant="stop", elem_id="plan-yes"))
        a("plan_no", gr.Button("Keep mine", elem_id="plan-no"))
    a("cot_incoming", gr.Textbox(visible="hidden", elem_id="cot-incoming"))  # see MERGE_JS
    hints = {
        "semantic": "what sounds, which materials",
        "temporal": "when, in what order, how long",
        "aesthetic": "quality, dryness, brightness, room",
        "spatial": "where in the stereo field, distance, movement",
        "negative": "what the take must not contain, e.g. speech, music",
    }
    for f in FIELDS:
        with gr.Row(equal_height=False):
            a(f"cot_{f}", gr.Textbox(label=f.capitalize(), info=hints[f], lines=2, elem_id=f"cot-{f}", scale=8))
            if f != "negative":
                btn = gr.Button("Reset", size="sm", elem_id=f"reset-{f}", scale=0, min_width=80)
                a(f"reset_{f}", btn)


def _settings_section(page: Page) -> None:
    a = page.add
    gr.Markdown("### Weights and settings")
    with gr.Row():
        defaults = {"semantic": 1.0, "temporal": 0.6, "aesthetic": 0.1, "spatial": 0.4}
        for d in DIMENSIONS:
            a(f"w_{d}", gr.Slider(0, 3, value=defaults[d], step=0.05, label=f"{d} weight", elem_id=f"w-{d}"))
    with gr.Row():
        lo, hi = LIMITS["candidates"]
        a("candidates", gr.Slider(lo, hi, value=1, step=1, label="candidates (best of N)", elem_id="candidates"))
        a("seed", gr.Number(0, label="seed", precision=0, minimum=0, maximum=MAX_SEED - 8, elem_id="seed"))
        a("seed_locked", gr.Checkbox(False, label="lock seed", elem_id="seed-lock"))
        lo, hi = LIMITS["steps"]
        a("steps", gr.Slider(lo, hi, value=24, step=1, label="steps", elem_id="steps"))
        lo, hi = LIMITS["guidance"]
        a("guidance", gr.Slider(lo, hi, value=3.5, step=0.1, label="guidance", elem_id="guidance"))
    with gr.Row():
        model = gr.Dropdown([], value=None, label="model (trained models of the project: Train page)", scale=2)
        a("model_pick", model)
        model.elem_id = "render-model"
        a("render_btn", gr.Button("Render take", variant="primary", elem_id="render", scale=1))
        a("cancel_btn", gr.Button("Cancel render", variant="stop", elem_id="cancel", scale=1))
    with a("render_confirm_row", gr.Row(visible=False, elem_id="confirm-render")):
        a("render_confirm_text", gr.Markdown(latex_delimiters=[]))
        a("render_yes", gr.Button("Render anyway", variant="stop", elem_id="render-yes"))
        a("render_no", gr.Button("Write it first", elem_id="render-no"))


def _takes_section(page: Page) -> None:
    a = page.add
    gr.Markdown("### Takes — best weighted total first")
    a("takes_table", gr.Dataframe(headers=TAKE_HEADERS, interactive=False, elem_id="takes-table", wrap=True))
    with gr.Row(equal_height=False):
        a("take_pick", gr.Dropdown([], value=None, label="Take", elem_id="take-pick", scale=3))
        a("star_btn", gr.Button("★ Star", size="md", elem_id="star"))
        a("reject_btn", gr.Button("✗ Reject", size="md", elem_id="reject"))
        a("clear_btn", gr.Button("Clear rating", size="md", elem_id="clear-rating"))
    with gr.Row():
        a("take_audio", gr.Audio(label="Take", type="filepath", interactive=False, elem_id="take-audio"))
        a("take_info", gr.Markdown(elem_id="take-info", latex_delimiters=[]))
    gr.Markdown("### Compare — original audio and two takes, one colour scale, the video's time axis")
    with gr.Row():
        a("compare_a", gr.Dropdown([], value=None, label="Take A", elem_id="compare-a"))
        a("compare_b", gr.Dropdown([], value=None, label="Take B", elem_id="compare-b"))
    a("spectrograms", gr.Plot(show_label=False, elem_id="spectrograms"))
    a("positions", gr.Plot(show_label=False, elem_id="positions"))


def _export_section(page: Page) -> None:
    a = page.add
    gr.Markdown("### Export the chosen take")
    with gr.Row(equal_height=True):
        labels = list(EXPORT_FORMATS)
        a("formats", gr.CheckboxGroup(labels, value=labels[:1], label="formats", elem_id="formats", scale=3))
        a("normalise", gr.Checkbox(False, label="normalise loudness", elem_id="normalise"))
        a("lufs", gr.Number(-23, label="target (LUFS)", elem_id="lufs"))
        a("export_btn", gr.Button("Export", variant="primary", elem_id="export"))
    a("export_files", gr.File(label="Exported files", file_count="multiple", interactive=False, elem_id="exports"))


TRAIN_VIEW = [  # the Train page as a project shows it, and the Studio page's render-model picker
    "model_pick",
    "train_summary",
    "sounds_table",
    "runs_table",
    "train_run",
    "train_progress",
    "train_plot",
    "train_seen",
]
TAKES_VIEW = [
    "takes_table",
    "take_pick",
    "take_audio",
    "take_info",
    "compare_a",
    "compare_b",
    "spectrograms",
    "positions",
    "export_files",
]
PROJECT_VIEW = [
    "project",
    "project_pick",
    "project_name",
    "clip",
    "clip_pick",
    "video",
    "media_info",
    "original_audio",
    *(f"cot_{f}" for f in FIELDS),
    "plan_confirm_row",
    "render_confirm_row",
    *(f"w_{d}" for d in DIMENSIONS),
    "candidates",
    "seed",
    "seed_locked",
    "steps",
    "guidance",
    *TAKES_VIEW,
    "message",
    *TRAIN_VIEW,
]
SETTINGS = [*(f"w_{d}" for d in DIMENSIONS), "candidates", "seed", "seed_locked", "steps", "guidance"]
COT = [f"cot_{f}" for f in FIELDS]
CLIP_VIEW = [n for n in PROJECT_VIEW if n not in ("project", "project_pick", "project_name", "clip_pick", *TRAIN_VIEW)]
TAKE_VIEW = ["take_audio", "take_info", "export_files", "message"]


def _wire(page: Page, demo: gr.Blocks, concurrency: int) -> None:
    """Every control's event, each bound to one action."""
    # the project list with the page's open project: a load answered after a Create must not drop it (the
    # state is read when the load runs, on the server)
    pick = lambda project: gr.update(choices=page.actions.project_choices(), value=project)  # noqa: E731
    demo.load(pick, page.c["project"], page.c["project_pick"])
    _wire_projects(page)
    _wire_plan_and_settings(page, concurrency)
    _wire_takes(page, concurrency)
    _wire_train(page)


def _wire_projects(page: Page) -> None:
    act, c, bind = page.actions, page.c, page.bind
    bind(c["create_btn"].click, act.create_project, ["project_name"], [*PROJECT_VIEW, "confirm_row"])
    bind(c["project_pick"].input, act.open_project, ["project_pick"], [*PROJECT_VIEW, "confirm_row"])
    bind(c["rename_btn"].click, act.rename_project, ["project", "project_name"], PROJECT_VIEW)
    # the delete token lives in the session's state (server side) between the two steps: see studio_actions
    asked = ["confirm_text", "confirm_row", "message", "delete_token"]
    bind(c["delete_btn"].click, act.ask_delete, ["project"], asked, session=True)
    deleted = [*PROJECT_VIEW, "confirm_row", "delete_token"]
    bind(c["confirm_yes"].click, act.confirm_delete, ["project", "delete_token"], deleted, session=True)
    bind(c["confirm_no"].click, act.cancel_delete, ["delete_token"], ["confirm_row", "message", "delete_token"])
    bind(c["upload"].upload, act.import_video, ["project", "upload"], [*PROJECT_VIEW, "upload"])
    bind(c["clip_pick"].input, act.open_clip, ["project", "clip_pick"], CLIP_VIEW)


def _wire_plan_and_settings(page: Page, concurrency: int) -> None:
    act, c, bind = page.actions, page.c, page.bind
    planned = [*COT, "plan_confirm_text", "plan_confirm_row", "message"]
    for name, action in (("plan_btn", act.plan), ("plan_yes", confirmed(act.plan))):  # edited blocks: asks first
        bind(
            c[name].click,
            action,
            ["clip", *COT],
            planned,
            progress=True,
            concurrency_limit=concurrency,
            concurrency_id="plan",
            show_progress_on=[c["cot_semantic"]],
        )
    bind(c["plan_no"].click, act.keep_blocks, [], ["plan_confirm_row", "message"])
    bind(c["undo_btn"].click, act.undo_edit, ["clip"], [*COT, "message"])
    for f in FIELDS:
        bind(c[f"cot_{f}"].blur, act.save_cot, ["clip", *COT], ["message"])
        if f != "negative":
            reset = lambda clip, *fields, f=f: act.reset_block(clip, f, *fields)  # noqa: E731
            bind(c[f"reset_{f}"].click, reset, ["clip", *COT], [f"cot_{f}", "message"])
    for name in SETTINGS:
        comp = c[name]
        # sliders on release (the value before the number box clamps it), the seed on leaving it, the lock at once
        trigger = (
            comp.blur if isinstance(comp, gr.Number) else comp.input if isinstance(comp, gr.Checkbox) else comp.release
        )
        # raw values (preprocess=False): Gradio's own range check would turn a negative weight typed into a
        # slider's number box into a bare "less than minimum" error before the action could name the weight,
        # refuse it and put the stored settings back (checked_settings checks every value)
        bind(trigger, act.save_settings, ["project", *SETTINGS], [*SETTINGS, "message"], preprocess=False)


def _wire_takes(page: Page, concurrency: int) -> None:
    act, c, bind = page.actions, page.c, page.bind
    rendered = [*TAKES_VIEW, "seed", "message", "render_confirm_text", "render_confirm_row"]
    for name, action in (("render_btn", act.render_take), ("render_yes", confirmed(act.render_take))):
        bind(  # an empty Semantic block: asks first
            c[name].click,
            action,
            ["project", "clip", *COT, *SETTINGS],
            rendered,
            progress=True,
            show_progress_on=[c["takes_table"]],
            preprocess=False,  # raw values, checked by the action (see the settings events)
            concurrency_limit=concurrency,
            concurrency_id="render",
        )
    bind(c["render_no"].click, act.keep_editing, [], ["render_confirm_row", "message"])
    bind(c["cancel_btn"].click, act.cancel_render, [], ["message"], session=True, queue=False)  # not behind renders
    bind(c["take_pick"].input, act.pick_take, ["clip", "take_pick"], TAKE_VIEW)
    rated = ["takes_table", "take_pick", "take_info", "compare_a", "compare_b", "message"]
    for name, rating in (("star_btn", 1), ("reject_btn", -1), ("clear_btn", 0)):
        rate = lambda clip, take, r=rating: act.rate_take(clip, take, r)  # noqa: E731
        bind(c[name].click, rate, ["clip", "take_pick"], rated)
    for name in ("compare_a", "compare_b"):
        bind(c[name].input, act.compare, ["clip", "compare_a", "compare_b"], ["spectrograms", "positions", "message"])
    bind(
        c["export_btn"].click,
        act.export_take,
        ["take_pick", "formats", "normalise", "lufs"],
        ["export_files", "message"],
    )

    def on_row(clip, evt: gr.SelectData):
        row = evt.index[0] if isinstance(evt.index, list | tuple) else evt.index
        result = act.pick_row(clip, row)
        return tuple(result.get(n, gr.skip()) for n in ["take_pick", *TAKE_VIEW])

    c["takes_table"].select(on_row, [c["clip"]], [c[n] for n in ["take_pick", *TAKE_VIEW]])


def _train_page(page: Page) -> None:
    """The Train page: the project's dataset, the method and its settings, the runs and their curves."""
    a = page.add
    a("train_seen", gr.State("none"))
    a("train_summary", gr.Markdown(elem_id="train-summary"))
    types = list(page.actions.settings.upload_types)
    with gr.Row(equal_height=False):
        label = "Add videos with their own audio (clips to train on)"
        a(
            "train_videos",
            gr.File(label=label, file_count="multiple", file_types=types, height=110, elem_id="train-videos"),
        )
        label = "Add library sounds (tags from the file names or a CSV)"
        kinds = list(SOUND_TYPES)
        a(
            "train_sounds",
            gr.File(label=label, file_count="multiple", file_types=kinds, height=110, elem_id="train-sounds"),
        )
        label = "Tags CSV (columns file, tags)"
        a("train_tags", gr.File(label=label, file_types=[".csv"], height=110, elem_id="train-tags"))
    a("sounds_table", gr.Dataframe(headers=SOUND_HEADERS, interactive=False, elem_id="sounds-table", max_height=200))
    gr.Markdown(
        "### Method\nLoRA adapters on the generator; a held-out part of the data is evaluated during training with "
        "early stopping, and FoleyBench on the original classes is checked against the start model before a "
        "result is offered. A fine-tune also replays FoleyWorld clips (the world the start model learned) so "
        "that it does not forget it; distill (0..1) moves their target from their own sound toward what the start "
        "model predicts. Fast-GRPO uses the Studio page's reward weights."
    )
    a("train_method", gr.Radio(METHOD_CHOICES, value="finetune", label="method", elem_id="train-method"))
    _train_fields(page)
    with gr.Row():
        a("train_start", gr.Button("Start training", variant="primary", elem_id="train-start"))
        a("train_cancel", gr.Button("Cancel", variant="stop", elem_id="train-cancel"))
        a("train_resume", gr.Button("Resume", elem_id="train-resume"))
    gr.Markdown("### Runs and their models")
    a("train_run", gr.Dropdown([], value=None, label="run", elem_id="train-run"))
    a("train_progress", gr.Markdown(elem_id="train-progress"))
    a("train_plot", gr.Plot(show_label=False, elem_id="train-plot"))
    a("runs_table", gr.Dataframe(headers=RUN_HEADERS, interactive=False, elem_id="runs-table"))
    a("train_timer", gr.Timer(1.0))


def _train_fields(page: Page) -> None:
    from app.train_runs import DEFAULTS

    a, d = page.add, DEFAULTS["finetune"] | {"group": 4, "beta": 2000.0}
    labels = {
        "steps": "steps (GRPO: iterations)",
        "lr": "learning rate",
        "lora_rank": "LoRA rank",
        "held_out": "held-out fraction",
        "bench_clips": "FoleyBench clips (0: no check)",
        "batch": "batch (fine-tune)",
        "replay": "FoleyWorld replay clips (fine-tune)",
        "distill": "replay held to the start model, 0..1",
        "group": "group (GRPO)",
        "beta": "beta (DPO)",
    }
    with gr.Row():
        for k in TRAIN_FIELDS:
            a(f"t_{k}", gr.Number(d[k], label=labels[k], elem_id=f"t-{k.replace('_', '-')}", min_width=110))


def _wire_train(page: Page) -> None:
    act, c, bind = page.actions.train, page.c, page.bind
    fields = [f"t_{k}" for k in TRAIN_FIELDS]
    view = ["train_summary", "sounds_table", "runs_table", "train_run", "train_progress", "train_plot", "train_seen"]
    bind(c["train_videos"].upload, act.add_videos, ["project", "train_videos"], [*PROJECT_VIEW, "train_videos"])
    sounds = ["project", "train_sounds", "train_tags"]
    bind(c["train_sounds"].upload, act.add_sounds, sounds, [*view, "train_sounds", "train_tags", "message"])
    bind(c["train_method"].input, act.method_defaults, ["train_method"], fields)
    bind(c["train_start"].click, act.start, ["project", "train_method", *fields], [*view, "model_pick", "message"])
    for name, action in (("train_cancel", act.cancel), ("train_resume", act.resume)):
        bind(c[name].click, action, ["project", "train_run"], [*view, "model_pick", "message"])
    bind(c["train_run"].input, act.pick_run, ["project", "train_run"], ["train_progress", "train_plot", "train_seen"])
    poll = ["project", "train_run", "train_seen"]
    bind(c["train_timer"].tick, act.poll, poll, [*view, "model_pick"], show_progress="hidden", queue=False)
    bind(c["model_pick"].input, act.choose_model, ["project", "model_pick"], ["message"])


def _studio_page(actions: StudioActions) -> Page:
    settings = actions.settings
    page = Page(actions)
    page.add("project", gr.State(None))
    page.add("clip", gr.State(None))
    page.add("delete_token", gr.State(None))  # issued by Delete…, required by "Yes, delete it"
    _project_bar(page)
    message = gr.Markdown("Create a project or open one to begin.", elem_id="studio-message", latex_delimiters=[])
    page.add("message", message)
    with gr.Row():
        with gr.Column(scale=5):
            _clip_section(page, settings)
        with gr.Column(scale=6):
            _cot_section(page)
    _settings_section(page)
    _takes_section(page)
    _export_section(page)
    return page


def _world_page(out_dir: str) -> None:
    from engine.errors import UserInputError

    gr.Markdown("FoleyWorld: procedural clips with exact ground truth, scored by FoleyBench.")
    with gr.Row():
        split = gr.Dropdown(SPLITS, value="test-multi", label="split")
        index = gr.Number(value=0, precision=0, label="clip index", minimum=0)
        duration = gr.Slider(2, 12, value=9, step=0.5, label="duration (s)")
        go = gr.Button("Draw clip", variant="primary")
    with gr.Row():
        video = gr.Video(label="clip", interactive=False)
        with gr.Column():
            blocks = [gr.Textbox(label=name.capitalize(), lines=2, interactive=False) for name in DIMENSIONS]
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


def build_app(
    out_dir: str | None = None, settings: StudioSettings | None = None, actions: StudioActions | None = None
) -> gr.Blocks:
    """The studio's Blocks (not launched). ``out_dir``: where FoleyWorld clips go (a new temp folder by
    default); ``settings``: from the environment by default."""
    settings = settings or (actions.settings if actions else StudioSettings.from_env())
    actions = actions or StudioActions(settings)
    out_dir = out_dir or tempfile.mkdtemp(prefix="foley-world-")
    with gr.Blocks(title="Foley Studio", analytics_enabled=False) as demo:
        gr.Markdown(f"# Foley Studio\n{_model_line(settings)}")
        with gr.Tabs():
            with gr.Tab("Studio", id="studio"):
                page = _studio_page(actions)
            with gr.Tab("Train", id="train"):
                _train_page(page)
            with gr.Tab("FoleyWorld", id="world"):
                _world_page(out_dir)
        _wire(page, demo, settings.render_concurrency)
    return demo


def _model_line(settings: StudioSettings) -> str:
    from engine.errors import UserInputError
    from engine.planner.default import has_planner

    try:
        planner = "with its planner" if has_planner(settings.model) else "without a planner (write the blocks)"
    except UserInputError as exc:
        return f"⚠ {exc}"
    return f"Model **{settings.model}**, {planner}; takes scored by the four offline reward heads."


def _warm_up(actions: StudioActions) -> None:
    """Load the model, planner, reward heads and text encoder while the page opens (errors surface later,
    as a message, on the first action that needs them)."""
    try:
        actions.warm_up()
    except Exception:  # noqa: BLE001 - reported by the action that needs the objects
        log.warning("could not load the model %r at start; actions will say why", actions.settings.model)


def launch_studio(settings: StudioSettings | None = None) -> int:
    """Serve the studio (127.0.0.1:7860 unless FOLEY_HOST / FOLEY_PORT say otherwise), answering only its own
    page (`app.guard`); refuses a host other machines reach without a password unless FOLEY_ALLOW_OPEN=1."""
    from app.guard import GuardPolicy
    from app.served import private_cache, remove_cache
    from engine.errors import UserInputError

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # offline first: no calls home
    _log_to_stderr()
    try:
        settings = settings or StudioSettings.from_env()
        problem = settings.open_host_problem()
        if problem:
            raise UserInputError(problem)
        if not settings.loopback and not settings.password:
            log.warning("serving %s without a password (FOLEY_ALLOW_OPEN=1): anyone who reaches it can use and "
                        "delete every project", settings.host)  # fmt: skip
        actions = StudioActions(settings)
    except UserInputError as exc:  # a bad FOLEY_* value or database: one line, as every command of launch.py
        print(f"error: {exc}", file=sys.stderr)
        return 2
    actions.store.remove_orphans()
    cache = private_cache()  # before the Blocks: each component reads Gradio's cache folder when made
    world_dir = tempfile.mkdtemp(prefix="foley-world-")
    demo = build_app(world_dir, actions=actions)
    threading.Thread(target=_warm_up, args=(actions,), daemon=True, name="warm-up").start()
    auth = (settings.user, settings.password) if settings.password else None

    def originals(client: str) -> list[Path]:  # what a browser may fetch copies of: its open projects, FoleyWorld
        return [*actions.media_for(client), *Path(world_dir).rglob("*")]

    policy = GuardPolicy.for_settings(settings, [world_dir], cache, originals)
    note = f"Foley Studio: enter the studio's password. {policy.backoff.policy_note()}" if policy.backoff else None
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)  # a terminated server stops like Ctrl-C: its clean-up runs
    try:
        _serve(demo, settings, auth, note, policy, world_dir)
    finally:
        remove_cache(cache)
        shutil.rmtree(world_dir, ignore_errors=True)
    return 0


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _serve(demo: gr.Blocks, settings: StudioSettings, auth, note: str | None, policy, world_dir: str) -> None:
    from app.guard import StudioGuard

    demo.queue(default_concurrency_limit=4).launch(
        server_name=settings.host,
        server_port=settings.port,
        auth=auth,
        auth_message=note,
        max_file_size=settings.max_upload_bytes,
        # Gradio copies what it serves from here into its cache; the file route serves only the cache
        # and the FoleyWorld clips (StudioGuard)
        allowed_paths=[str(settings.projects_dir.resolve()), world_dir],
        app_kwargs={"middleware": [Middleware(StudioGuard, policy=policy)]},
        css=CSS,
        footer_links=[],
        quiet=False,
    )


def _log_to_stderr() -> None:
    """The studio's own log lines (``foley.*``: clean-ups, warnings) on stderr with a time stamp."""
    root = logging.getLogger("foley")
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
        root.setLevel(logging.INFO)
