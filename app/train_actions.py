"""What every control of the Train page does: one method of `TrainActions` per action (the conventions of
`app.studio_actions`: page values in, a dict from output names to new values out, `UserInputError` for a
message). The runs themselves belong to `app.train_runs.TrainingManager`; a poll every second redraws
the progress, the curves and the runs table only when the run has moved on."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from app.projects import Run
from app.served import discard_upload
from app.train_runs import DEFAULTS, METHODS, TrainingManager, checked_config
from engine.errors import UserInputError

METHOD_CHOICES = [("LoRA fine-tune", "finetune"), ("Fast-GRPO", "grpo"), ("Flow-DPO", "dpo")]
RUN_HEADERS = ["run", "status", "steps", "best held-out loss", "FoleyBench check", "offered", "started"]
SOUND_HEADERS = ["sound", "tags", "seconds"]
STUDIO_MODEL = "studio"  # the render-model choice meaning the studio's own model
TRAIN_FIELDS = ("steps", "lr", "lora_rank", "held_out", "bench_clips", "batch", "replay", "distill", "group", "beta")


def _ok(text: str) -> str:
    return f"✓ {text}"


class TrainActions:
    """The Train page's actions; shares the store, the settings and the engine objects of `StudioActions`."""

    def __init__(self, studio) -> None:
        self.studio = studio
        self.store = studio.store
        self.manager = TrainingManager(studio.store, studio.settings.model)

    # ----------------------------------------------------------------------------------- views

    def view(self, project_id: int | None, run_id: int | None = None) -> dict:
        """The whole Train page for a project (and the render-model picker of the Studio page)."""
        if project_id is None:
            empty = {"train_summary": "Open a project to train on its clips, sounds and ratings.", "sounds_table": []}
            empty |= {"runs_table": [], "train_run": _choices([], None), "train_progress": "", "train_plot": None}
            return empty | {"model_pick": _choices([], None), "train_seen": "none"}
        runs = self.store.list_runs(project_id)
        if run_id not in {r.id for r in runs}:
            run_id = runs[0].id if runs else None
        sounds = [[s.name, s.tags, round(s.duration, 2)] for s in self.store.list_sounds(project_id)]
        view = {"train_summary": self.summary(project_id), "sounds_table": sounds}
        view |= {
            "runs_table": [run_row(r) for r in runs],
            "train_run": _choices([(r.label, r.id) for r in runs], run_id),
        }
        return view | self.run_view(run_id) | {"model_pick": self.model_choices(project_id)}

    def summary(self, project_id: int) -> str:
        d = self.manager.data_summary(project_id)
        parts = [f"**{d['videos']}** video clip(s) with their own audio"]
        if d["unplanned"]:
            parts[-1] += f" ({d['unplanned']} not planned yet: planned when training starts)"
        parts.append(f"**{d['sounds']}** library sound(s)")
        parts.append(f"{d['seconds']:.1f} s of audio in all")
        text = "Dataset: " + ", ".join(parts) + "."
        if d["without_audio"]:
            text += f" {d['without_audio']} clip(s) without audio are not used."
        return text + f" **{d['pairs']}** preference pair(s) (starred against rejected takes of one clip and CoT)."

    def run_view(self, run_id: int | None) -> dict:
        """Progress line and curves of one run, and the key the poll compares."""
        from app.plots import training_curves

        if run_id is None:
            return {"train_progress": "No training run yet.", "train_plot": None, "train_seen": "none"}
        run = self.store.get_run(run_id)
        history = self.manager.history(run)
        live = self.manager.live(run.id)
        return {
            "train_progress": progress_line(run, history, live.phase if live else None),
            "train_plot": training_curves(history, run.label),
            "train_seen": self._seen(run),
        }

    def _seen(self, run: Run) -> str:
        live = self.manager.live(run.id)
        return f"{run.id}:{run.status}:{live.version if live else -1}"

    def model_choices(self, project_id: int) -> dict:
        """The Studio page's render-model picker: the studio's model, then every offered run of the project."""
        import gradio as gr

        offered = [(f"{r.label} (trained)", f"run-{r.id}") for r in self.store.list_runs(project_id) if r.offered]
        choices = [(f"{self.studio.settings.model} (the studio's model)", STUDIO_MODEL), *offered]
        value = (self.store.get_project(project_id).settings or {}).get("render_model", STUDIO_MODEL)
        return gr.update(choices=choices, value=value if value in {c[1] for c in choices} else STUDIO_MODEL)

    # --------------------------------------------------------------------------------- data

    def add_videos(self, project_id: int | None, files: list[str] | None) -> dict:
        """Import videos (with their own audio) as clips of the project and plan each; bad files are listed."""
        if not files:
            return {}
        if project_id is None:
            raise UserInputError("create or open a project before adding videos")
        added, skipped = [], []
        for f in files:
            try:
                view = self.studio.import_video(project_id, f)
                if view.get("message", "").startswith("⚠"):
                    raise UserInputError(view["message"][2:])
                clip = view["clip"]
                if self.studio._engine["planner"] is not None:
                    self.studio.plan(clip)
                added.append(Path(f).name)
            except UserInputError as exc:
                skipped.append(f"{Path(f).name}: {exc}")
        message = _ok(f"Added {len(added)} clip(s) to train on (review their CoTs in the Studio page).")
        message += "".join(f"  \n⚠ skipped {s}" for s in skipped)
        return self.studio.project_view(project_id) | self.view(project_id) | {"train_videos": None, "message": message}

    def add_sounds(self, project_id: int | None, files: list[str] | None, tags_csv: str | None) -> dict:
        """Add audio files to the library; tags from the CSV (columns file, tags) or else the file names."""
        from trainer.ingest import read_audio_file, read_tags_csv, tags_from_name

        if not files:
            return {}
        if project_id is None:
            raise UserInputError("create or open a project before adding sounds")
        listed = read_tags_csv(Path(tags_csv)) if tags_csv else {}
        added, skipped = 0, []
        for f in files:
            name = Path(f).name
            try:
                duration = len(read_audio_file(Path(f), 44100)) / 44100
                tags = listed.get(name) or tags_from_name(Path(f))
                self.store.add_sound(project_id, f, name, tags, duration, self.studio.settings.max_upload_bytes)
                added += 1
            except UserInputError as exc:
                skipped.append(f"{name}: {exc}")
            finally:  # the library keeps its own copy: none is left in the web server's upload folder
                discard_upload(f)
        discard_upload(tags_csv)
        message = _ok(f"Added {added} sound(s) to the library.") + "".join(f"  \n⚠ skipped {s}" for s in skipped)
        return self.view(project_id) | {"train_sounds": None, "train_tags": None, "message": message}

    # ------------------------------------------------------------------------------- runs

    def method_defaults(self, method: str) -> dict:
        """The page's fields set to ``method``'s defaults (fields it does not use keep their value)."""
        if method not in METHODS:
            return {}
        return {f"t_{k}": v for k, v in DEFAULTS[method].items()}

    def start(self, project_id: int | None, method: str, *values) -> dict:
        """Start a run of ``method`` with the page's settings (``values`` in `TRAIN_FIELDS` order)."""
        if project_id is None:
            raise UserInputError("create or open a project first")
        project = self.store.get_project(project_id)
        weights = self.studio._settings_of(project)["weights"]
        config = checked_config(method, dict(zip(TRAIN_FIELDS, values)), weights)
        run = self.manager.start(project_id, method, config)
        return self.view(project_id, run.id) | {"message": _ok(f"Started {run.label}; it trains in the background.")}

    def cancel(self, project_id: int | None, run_id: int | None) -> dict:
        if run_id is None or not self.manager.cancel(run_id):
            raise UserInputError("no training run of this page is running")
        run = self.store.get_run(run_id)
        return self.view(project_id, run_id) | {"message": _ok(f"Stopping {run.label} at its next step…")}

    def resume(self, project_id: int | None, run_id: int | None) -> dict:
        if run_id is None:
            raise UserInputError("pick a stopped run to resume")
        run = self.manager.resume(run_id)
        return self.view(project_id, run.id) | {"message": _ok(f"Resumed {run.label} from its last checkpoint.")}

    def pick_run(self, project_id: int | None, run_id: int | None) -> dict:
        return self.run_view(run_id)

    def poll(self, project_id: int | None, run_id: int | None, seen: str | None) -> dict:
        """Every second: a new view when the shown run has moved on (else nothing, so nothing redraws)."""
        if project_id is None or run_id is None:
            return {}
        try:
            run = self.store.get_run(run_id)
        except UserInputError:
            return {}
        if self._seen(run) == seen:
            return {}
        return self.view(project_id, run_id)

    def check_idle(self, project_id: int) -> None:
        """`UserInputError` while a run of the project is going on (its folder must not go away under it)."""
        for run in self.store.list_runs(project_id):
            live = self.manager.live(run.id)
            if live is not None and live.thread is not None and live.thread.is_alive():
                raise UserInputError(f"{run.label} is training in this project; cancel it first")

    def choose_model(self, project_id: int | None, value: str | None) -> dict:
        """Keep the Studio page's render-model choice in the project."""
        if project_id is None or value is None:
            return {}
        if value != STUDIO_MODEL and not any(f"run-{r.id}" == value for r in self.store.list_runs(project_id)):
            raise UserInputError("that model is not part of this project")
        self.store.save_settings(project_id, {"render_model": value})
        return {"message": _ok("Takes of this project now render with the chosen model.")}


# ------------------------------------------------------------------------------------- helpers


def progress_line(run: Run, history: list[dict], phase: str | None) -> str:
    """One line about a run: status, what it does, its last loss / reward, its best held-out loss."""
    bits = [f"**{run.label}**", run.status]
    if phase and run.status == "running":
        bits.append(phase)
    train = [h for h in history if "loss" in h and h.get("phase", "train") == "train"]
    if train:
        last = train[-1]
        bits.append(f"step {last['step']}/{run.config.get('steps')}: loss {last['loss']:.4f}")
        if "reward_weighted" in last:
            bits.append(f"reward {last['reward_weighted']:.3f}")
    held = [h for h in history if "held_out_loss" in h]
    if held:
        best = min(held, key=lambda h: h["held_out_loss"])
        bits.append(
            f"held-out {held[-1]['held_out_loss']:.4f} (best {best['held_out_loss']:.4f} at step {best['step']})"
        )
    r = run.result
    if run.status == "finished":
        bits.append(_check_text(r.get("bench_check") or {}) + (" · offered for rendering" if run.offered else ""))
    if r.get("stopped"):
        bits.append(str(r["stopped"]))
    if run.status == "failed" and r.get("error"):
        bits.append(f"⚠ {r['error']}")
    return " · ".join(bits)


def _check_text(check: dict) -> str:
    passed = check.get("passed")
    if passed is None:
        return "FoleyBench check off"
    worst = check.get("worst")
    drop = (check.get("drops") or {}).get(worst, 0.0)
    return f"FoleyBench check {'passed' if passed else 'failed'} (worst: {worst} {-drop:+.1%})"


def run_row(run: Run) -> list:
    r = run.result
    when = run.created.replace(tzinfo=dt.UTC).astimezone().strftime("%Y-%m-%d %H:%M")
    best = r.get("best_held_out_loss")
    check = r.get("bench_check") or {}
    verdict = {True: "passed", False: "failed", None: "off"}[check.get("passed")] if check else ""
    steps = r.get("steps_done", r.get("step", ""))
    return [run.label, run.status, f"{steps}/{run.config.get('steps')}", round(best, 4) if best else "", verdict,
            "yes" if run.offered else "", when]  # fmt: skip


def _choices(choices: list, value):
    import gradio as gr

    return gr.update(choices=choices, value=value)
