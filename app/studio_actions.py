"""What every control of the studio page does: one method of `StudioActions` per action.

A method takes the values of the page's inputs and returns a ``dict`` from output names to new values
(the page, `app.studio`, turns the names into components and leaves every output it does not name as it
was). A bad input raises `UserInputError`; the page then shows only the message and changes nothing else,
and since every method checks its inputs before it writes, the project is left as it was.

Shared across sessions, read-only: the store (which serialises its own writes), the model bundle, the
planner and the reward heads, each loaded once. Per session: the open project and clip (passed in and
out as Gradio state), the session's cancel flag, and which project each browser's pages have open
(`note_open`: the file route serves a browser only the media of those, `app.guard`).

The page never loses typing: *Plan* on blocks the designer edited asks first (`plan` without
``confirmed``), every change of the blocks is one step of the clip's block history (`undo_edit`), a render
with an empty Semantic block asks first, and blocks longer than the text encoder reads (BLOCK_TOKENS, counted
with its own tokenizer) are refused (`checked_cot`). Messages are plain text (`as_text` at the page).

Destructive actions are confirmed on the server: *Delete…* (`ask_delete`) issues a one-use token bound to
the project and the browser session that expires after `CONFIRM_SECONDS`, kept in the session's Gradio
state (never sent to the page); `confirm_delete` refuses without it, so calling the delete endpoint
directly changes nothing.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import secrets
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from app import served
from app.projects import Clip, ClipMedia, Project, ProjectStore, Take
from app.settings import StudioSettings
from engine.cot import BLOCKS, MAX_BLOCK_CHARS, MAX_NEGATIVE_CHARS, validate_cot
from engine.errors import UserInputError
from engine.generator import BLOCK_TOKENS  # tokens the text encoder reads per block, [CLS] and [SEP] included
from engine.rewards import DEFAULT_WEIGHTS, DIMENSIONS, check_weights

FIELDS = (*BLOCKS, "negative")  # the CoT fields of the page, in order
DEFAULT_SETTINGS = {  # what a new project starts with (the reference weights; the render defaults)
    "weights": dict(DEFAULT_WEIGHTS),
    "candidates": 1,
    "seed": 0,
    "seed_locked": False,
    "steps": 24,
    "guidance": 3.5,
}
LIMITS = {"candidates": (1, 8), "steps": (1, 100), "guidance": (0.0, 10.0)}  # the page's ranges
MAX_SEED = 2**31 - 1
TAKE_HEADERS = ["take", "rating", "total", *DIMENSIONS, "seed", "steps", "guidance", "candidates", "rendered"]
BROWSER_CONTAINERS = (".mp4", ".webm")  # played as they are; others get an MP4 preview (stream copy)
CONFIRM_SECONDS = 60.0  # how long the answer to "Delete …?" stays valid
MARKDOWN_SPECIALS = frozenset("\\`*_{}[]()#+-.!|~$")  # escaped with a backslash in text shown as Markdown


class RenderCancelled(Exception):
    """The designer pressed Cancel while a render ran."""


CANCELLED = "Render cancelled; no take was written."


class _Run:
    """One session's running render: the flag Cancel sets, and the render's final message once it is done."""

    def __init__(self) -> None:
        self.cancel = threading.Event()
        self.done = threading.Event()
        self.message = ""


def _times_note(temporal: str) -> str:
    """' Temporal block: 3 onsets, 0.3 to 2.6 s.' (the times `engine.timeline` reads), or '' when it names none."""
    from engine.timeline import read_temporal

    times = read_temporal(temporal)
    onsets = sorted(t for g in times.onsets for t in g)
    if not onsets:
        return ""
    span = f"at {onsets[0]:g} s" if len(onsets) == 1 else f"{onsets[0]:g} to {onsets[-1]:g} s"
    return f" Temporal block: {len(onsets)} onset{'s' if len(onsets) > 1 else ''}, {span}."


def _msg_ok(text: str) -> str:
    return f"✓ {text}"


def as_text(text: object) -> str:
    """``text`` as a Markdown component shows it literally: HTML's ``& < >`` as entities and Markdown's
    punctuation backslash-escaped, so a project named ``<img src=x>`` or ``**x**`` is shown, never rendered.
    Every message, and every name or block the page puts into Markdown, goes through this."""
    out = str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return "".join(f"\\{c}" if c in MARKDOWN_SPECIALS else c for c in out)


def _blocks_differ(a: dict, b: dict) -> bool:
    """Whether two CoTs (dicts of the five fields, missing = empty) differ in any field's words."""
    return any(" ".join((a.get(f) or "").split()) != " ".join((b.get(f) or "").split()) for f in FIELDS)


class StudioActions:
    """The studio's actions over one store and one model (see the module docstring)."""

    def __init__(self, settings: StudioSettings, store: ProjectStore | None = None) -> None:
        self.settings = settings
        self.store = store or ProjectStore(settings.projects_dir, settings.db_url)
        self._runs: dict[str, _Run] = {}  # session -> its running render
        self._cancel_lock = threading.Lock()
        self._sessions_lock = threading.Lock()  # guards the two dicts below
        self._confirmations: dict[str, tuple[int, str, float]] = {}  # token -> (project, session, expires at)
        self._open: dict[str, dict[str, int | None]] = {}  # browser (client cookie) -> session -> open project
        self.confirm_seconds = CONFIRM_SECONDS
        self._load_lock = threading.Lock()
        self._objects: dict | None = None
        from app.train_actions import TrainActions

        self.train = TrainActions(self)  # the Train page's actions and the training runs of this store

    # ----------------------------------------------------------------------- shared engine objects

    @property
    def _engine(self) -> dict:
        """The bundle, the reward heads and the planner (None when the model has none), loaded on first use
        and then shared read-only by every session."""
        with self._load_lock:
            if self._objects is None:
                from engine.bundle import load_bundle
                from engine.planner.default import has_planner, load_planner
                from engine.rewards import load_reward_heads
                from engine.text_encoder import encode_sentences

                model = self.settings.model
                objects = {
                    "bundle": load_bundle(model),
                    "planner": load_planner(model) if has_planner(model) else None,
                    "heads": load_reward_heads(),
                }
                encode_sentences(["warm up"])  # the text encoder's one-time load, here rather than in a render
                self._objects = objects
            return self._objects

    def warm_up(self) -> None:
        """Load the shared engine objects now (the server calls this in the background at start)."""
        self._engine  # noqa: B018 - the property loads them

    # ------------------------------------------------------------------------- who sees what

    def note_open(self, client: str, session: str, project_id: int | None) -> None:
        """Remember which project a page (``session``) of a browser (``client``) has open after an action."""
        if client:
            with self._sessions_lock:
                self._open.setdefault(client, {})[session] = project_id

    def media_for(self, client: str) -> list[Path]:
        """The project files a browser may fetch (`app.guard`): those of the projects its pages have open."""
        with self._sessions_lock:
            projects = {p for p in self._open.get(client, {}).values() if p is not None}
        out: list[Path] = []
        for project_id in sorted(projects):
            try:
                out += self.store.served_media(project_id)
            except UserInputError:  # deleted meanwhile
                pass
        return out

    # ------------------------------------------------------------------------------- views

    def project_choices(self) -> list[tuple[str, int]]:
        return [(p.name, p.id) for p in self.store.list_projects()]

    def _settings_of(self, project: Project) -> dict:
        stored = project.settings or {}
        out = {**DEFAULT_SETTINGS, **stored}
        out["weights"] = {**DEFAULT_WEIGHTS, **(stored.get("weights") or {})}
        return out

    def _settings_view(self, project: Project) -> dict:
        s = self._settings_of(project)
        view = {f"w_{d}": s["weights"][d] for d in DIMENSIONS}
        return view | {k: s[k] for k in ("candidates", "seed", "seed_locked", "steps", "guidance")}

    def _empty_clip_view(self) -> dict:
        view = {"clip": None, "video": None, "media_info": "", "original_audio": None}
        view |= {f"cot_{f}": "" for f in FIELDS} | _no_questions()
        return view | self._takes_view(None, None)

    def project_view(self, project_id: int | None, clip_id: int | None = None) -> dict:
        """Everything the page shows of a project: settings, clips, and the open clip (the newest one
        unless ``clip_id`` names another)."""
        if project_id is None:
            view = {"project": None, "project_pick": None, "clip_pick": _choices_update([], None)}
            view |= {"project_name": ""}
            return view | self._empty_clip_view() | self.train.view(None)
        project = self.store.get_project(project_id)
        clips = self.store.list_clips(project_id)
        if clip_id not in {c.id for c in clips}:
            clip_id = clips[-1].id if clips else None
        view = {"project": project.id, "project_name": project.name}
        view["project_pick"] = _choices_update(self.project_choices(), project.id)
        view["clip_pick"] = _choices_update([(c.name, c.id) for c in clips], clip_id)
        view |= self._settings_view(project) | self.train.view(project_id)
        return view | (self.clip_view(clip_id) if clip_id is not None else self._empty_clip_view())

    def clip_view(self, clip_id: int, take_id: int | None = None) -> dict:
        clip = self.store.get_clip(clip_id)
        cot = clip.edited or clip.planned or {}
        view = {"clip": clip.id, "video": str(clip.preview), "media_info": media_summary(clip)}
        view["original_audio"] = str(clip.original_audio) if clip.original_audio else None
        view |= {f"cot_{f}": cot.get(f, "") for f in FIELDS} | _no_questions()
        return view | self._takes_view(clip, take_id)

    def _takes_view(self, clip: Clip | None, take_id: int | None) -> dict:
        """The takes table (best first), the take pickers and the chosen take (the best by default)."""
        takes = self.store.list_takes(clip.id) if clip is not None else []
        if take_id not in {t.id for t in takes}:
            take_id = takes[0].id if takes else None
        choices = [(f"{t.label} · {t.total:.3f}", t.id) for t in takes]
        by_number = sorted(takes, key=lambda t: -t.number)  # compare: the newest two by default
        a = by_number[0].id if by_number else None
        b = by_number[1].id if len(by_number) > 1 else None
        view = {"takes_table": [take_row(t) for t in takes], "take_pick": _choices_update(choices, take_id)}
        view |= {"compare_a": _choices_update(choices, a), "compare_b": _choices_update(choices, b)}
        view |= self.take_view(take_id)
        return view | self.compare(clip.id if clip else None, a, b)

    def take_view(self, take_id: int | None) -> dict:
        if take_id is None:
            return {"take_audio": None, "take_info": "", "export_files": None}
        take = self.store.get_take(take_id)
        return {"take_audio": str(take.path), "take_info": take_summary(take), "export_files": None}

    # ------------------------------------------------------------------------------ projects

    def create_project(self, name: str) -> dict:
        project = self.store.create_project(name)
        return self.project_view(project.id) | {"message": _msg_ok(f"Created project “{project.name}”.")}

    def open_project(self, project_id: int | None) -> dict:
        if project_id is None:
            return self.project_view(None)
        view = self.project_view(project_id)
        return view | {"message": _msg_ok(f"Opened “{view['project_name']}”."), "confirm_row": _hidden()}

    def rename_project(self, project_id: int | None, name: str) -> dict:
        project = self.store.rename_project(_need_project(project_id), name)
        choices = _choices_update(self.project_choices(), project.id)
        return {
            "project_pick": choices,
            "project_name": project.name,
            "message": _msg_ok(f"Renamed to “{project.name}”."),
        }

    def ask_delete(self, project_id: int | None, session: str = "") -> dict:
        """The confirmation step of *Delete…*: what would go, and the token `confirm_delete` needs."""
        project = self.store.get_project(_need_project(project_id))
        clips = self.store.list_clips(project.id)
        n_takes = sum(len(self.store.list_takes(c.id)) for c in clips)
        text = (
            f"**Delete “{as_text(project.name)}”** with its {len(clips)} clip(s), {n_takes} take(s) and exports? "
            "This cannot be undone."
        )
        token = secrets.token_urlsafe(24)
        with self._sessions_lock:
            now = time.monotonic()
            self._confirmations = {t: v for t, v in self._confirmations.items() if v[2] > now}
            self._confirmations[token] = (project.id, session, now + self.confirm_seconds)
        return {"confirm_text": text, "confirm_row": _shown(), "delete_token": token}

    def _confirmed(self, token: str | None, project_id: int, session: str) -> bool:
        """Whether ``token`` confirms deleting ``project_id`` in ``session`` now (a token is used once)."""
        with self._sessions_lock:
            entry = self._confirmations.pop(token, None) if isinstance(token, str) else None
        return entry is not None and entry[:2] == (project_id, session) and time.monotonic() < entry[2]

    def confirm_delete(self, project_id: int | None, token: str | None = None, session: str = "") -> dict:
        """Delete the project after `ask_delete` confirmed it in this session: its rows, its folder and every
        copy the web server made of its media (`app.served`), so its URLs stop working."""
        project = self.store.get_project(_need_project(project_id))
        if not self._confirmed(token, project.id, session):
            raise UserInputError(
                f"“{project.name}” was not deleted: the deletion was not confirmed (or the confirmation is "
                f"older than {self.confirm_seconds:g} s); press Delete… and answer again"
            )
        self.train.check_idle(project.id)
        copies = served.copies_of(self.store.served_media(project.id))  # found by content: before it goes
        others = [f for p in self.store.list_projects() if p.id != project.id for f in self.store.served_media(p.id)]
        self.store.delete_project(project.id)
        served.remove_copies(copies, keep=others)
        view = self.project_view(None)
        view["project_pick"] = _choices_update(self.project_choices(), None)
        return view | {
            "confirm_row": _hidden(),
            "delete_token": None,
            "message": _msg_ok(f"Deleted “{project.name}”."),
        }

    def cancel_delete(self, token: str | None = None) -> dict:
        if isinstance(token, str):
            with self._sessions_lock:
                self._confirmations.pop(token, None)
        return {"confirm_row": _hidden(), "delete_token": None, "message": "Nothing was deleted."}

    # --------------------------------------------------------------------------------- clips

    def import_video(self, project_id: int | None, upload: str | None) -> dict:
        """Copy an uploaded video into the open project and open it. A refused upload is a message (and an
        emptied upload box), never a change to the project."""
        if upload is None:
            return {}
        s = self.settings
        try:
            if project_id is None:
                raise UserInputError("create or open a project before importing a video")
            clip = self.store.import_clip(
                project_id, upload, Path(upload).name, inspect_video, s.max_upload_bytes, s.upload_types
            )
        except UserInputError as exc:  # the upload box is emptied, ready for the next file
            return {"upload": None, "message": f"⚠ {exc}"}
        finally:  # the store keeps its own copy: none is left in the web server's upload folder
            served.discard_upload(upload)
        view = self.project_view(project_id, clip.id)
        return view | {"upload": None, "message": _msg_ok(f"Imported {clip.name}: {media_summary(clip)}")}

    def open_clip(self, project_id: int | None, clip_id: int | None) -> dict:
        if clip_id is None:
            return self._empty_clip_view()
        clip = self.store.get_clip(clip_id)
        if clip.project_id != project_id:
            raise UserInputError("that clip belongs to another project")
        return self.clip_view(clip.id)

    # ----------------------------------------------------------------------------------- CoT

    def plan(
        self,
        clip_id: int | None,
        *fields: str,
        confirmed: bool = False,
        session: str = "",
        progress: Callable[[float, str], None] | None = None,
    ) -> dict:
        """The planner's four blocks for the open clip; they replace the designer's blocks.

        ``fields``: the five CoT fields as the page shows them (the stored blocks when not given). When they
        hold the designer's own text (not empty, not the planner's), nothing is planned unless ``confirmed``:
        the reply asks first (the page's "Replace my blocks" row). The replaced blocks stay in the clip's block
        history (`undo_edit`)."""
        clip = self.store.get_clip(_need_clip(clip_id))
        shown = dict(zip(FIELDS, fields)) if fields else (clip.edited or clip.planned or {})
        edited = any((v or "").strip() for v in shown.values()) and _blocks_differ(shown, clip.planned or {})
        if edited and not confirmed:
            text = "**Replace your edited blocks with the planner's?** Undo brings your text back afterwards."
            return {"plan_confirm_text": text, "plan_confirm_row": _shown(), "message": "Plan waits for your answer."}
        planner = self._engine["planner"]
        if planner is None:
            raise UserInputError(
                f"model {self.settings.model!r} has no planner; write the four blocks yourself and render"
            )
        if fields:  # the page's text, typed but not saved yet, goes into the block history too
            with contextlib.suppress(UserInputError):
                self.save_cot(clip.id, *fields)
        cot = planner.plan(clip.source, progress=progress).to_dict()
        cot.setdefault("negative", "")
        self.store.save_plan(clip.id, cot)
        view = {f"cot_{f}": cot.get(f, "") for f in FIELDS} | {"plan_confirm_row": _hidden()}
        undo = " Undo brings your blocks back." if edited else ""
        return view | {"message": _msg_ok(f"Planned {clip.name}. Edit any block, then render.{undo}")}

    def keep_blocks(self) -> dict:
        """The answer "Keep mine" to Plan's question: nothing changes."""
        return {"plan_confirm_row": _hidden(), "message": "Nothing was planned; your blocks are as they were."}

    def undo_edit(self, clip_id: int | None) -> dict:
        """Put back the open clip's blocks as they were before their last change (an edit, Plan or Reset)."""
        clip = self.store.undo_edit(_need_clip(clip_id))
        cot = clip.edited or {}
        left = len(self.store.block_history(clip.id))
        more = f"{left} more step{'s' if left != 1 else ''} to undo" if left else "nothing more to undo"
        view = {f"cot_{f}": cot.get(f, "") for f in FIELDS}
        return view | {"message": _msg_ok(f"Undid the last change of the blocks ({more}).")}

    def save_cot(self, clip_id: int | None, *fields: str) -> dict:
        """Keep the designer's blocks (on leaving a field); over-long blocks are refused with a message."""
        if clip_id is None:
            return {}
        cot = checked_cot(fields)
        clip = self.store.get_clip(clip_id)
        if (clip.edited or {}) == cot or (clip.edited is None and not any(cot.values())):
            return {}
        self.store.save_edit(clip.id, cot)
        return {"message": _msg_ok(f"Blocks saved.{_times_note(cot.get('temporal', ''))}")}

    def reset_block(self, clip_id: int | None, block: str, *fields: str) -> dict:
        """Put the planner's text back into one block (the others stay as they are)."""
        clip = self.store.get_clip(_need_clip(clip_id))
        if not clip.planned:
            raise UserInputError("nothing to reset to: the clip has not been planned yet (press Plan)")
        cot = dict(zip(FIELDS, fields))
        cot[block] = clip.planned.get(block, "")
        cot = checked_cot([cot[f] for f in FIELDS])
        self.store.save_edit(clip.id, cot)
        return {f"cot_{block}": cot[block], "message": _msg_ok(f"{block.capitalize()} is the planner's text again.")}

    # ------------------------------------------------------------------------------ settings

    def save_settings(self, project_id: int | None, *values) -> dict:
        """Keep the weights and render settings of the page in the project (on release of a control). A bad
        value is refused: the message says why and the controls go back to the stored settings."""
        if project_id is None:
            return {}
        project = self.store.get_project(project_id)
        try:
            settings = checked_settings(*values)
        except UserInputError as exc:
            return self._settings_view(project) | {"message": f"⚠ {exc}; the settings were not changed."}
        if settings != {k: self._settings_of(project)[k] for k in settings}:
            self.store.save_settings(project.id, settings)
        return {}

    # -------------------------------------------------------------------------------- render

    def render_take(
        self,
        project_id: int | None,
        clip_id: int | None,
        *values,
        confirmed: bool = False,
        session: str = "",
        progress: Callable[[float, str], None] | None = None,
    ) -> dict:
        """Render a take of the open clip with the page's CoT and settings (``values``: the five CoT fields,
        then the settings of `checked_settings`), score it and add it to the clip's takes.

        Everything is checked before the render starts; an empty Semantic block renders only when
        ``confirmed`` (otherwise the reply asks first, the page's "Render anyway" row, and nothing changes).
        Cancel (`cancel_render`, same ``session``) stops
        it at the next sampler step; the take is written only after the render is complete."""
        project_id, clip = _need_project(project_id), self.store.get_clip(_need_clip(clip_id))
        cot = checked_cot(values[: len(FIELDS)])
        settings = checked_settings(*values[len(FIELDS) :])
        if not cot["semantic"] and not confirmed:
            text = (
                "**The Semantic block is empty**: the take will not be told what sounds. Render anyway, or write "
                "what sounds (which materials) first?"
            )
            asked = {"render_confirm_text": text, "render_confirm_row": _shown()}
            return asked | {"message": "Render waits for your answer."}
        if not settings["seed_locked"]:
            settings["seed"] = secrets.randbelow(MAX_SEED - 8)
        self.store.save_edit(clip.id, cot)
        self.store.save_settings(project_id, settings)
        run = self._start(session)
        try:
            view = self._render(clip, cot, settings, run, progress)
        except RenderCancelled:
            view = {"message": CANCELLED}
        except Exception as exc:
            run.message = f"⚠ {exc}" if isinstance(exc, UserInputError) else f"⚠ render failed: {exc}"
            raise
        finally:
            self._finish(session, run)
        run.message = view["message"]
        return view | {"render_confirm_row": _hidden()}  # the question, if there was one, is answered

    def keep_editing(self) -> dict:
        """The answer "Write it first" to the empty-Semantic question: nothing is rendered."""
        return {"render_confirm_row": _hidden(), "message": "Nothing was rendered; write the Semantic block."}

    def _render(self, clip: Clip, cot: dict, settings: dict, run: _Run, progress) -> dict:
        """The render itself (best of ``settings["candidates"]``), then the take and the new takes view."""
        from engine.best_of_n import best_of_n
        from engine.pipeline import RenderSettings, prepare_video

        if progress:
            progress(0.0, "loading the model")
        eng = self._engine
        bundle, model = self.render_model(clip.project_id)
        prepared = prepare_video(clip.source, bundle)
        rs = RenderSettings(seed=settings["seed"], steps=settings["steps"], cfg=settings["guidance"])
        n, start = settings["candidates"], time.perf_counter()
        report = _step_reporter(progress, run.cancel, n)
        ranked = best_of_n(prepared, bundle, cot, rs, n, settings["weights"], eng["heads"], report)
        seconds = time.perf_counter() - start
        best = ranked[0]
        take = self.store.add_take(
            clip.id,
            best.audio,
            bundle.sample_rate,
            cot=cot,
            settings={k: settings[k] for k in ("steps", "guidance", "candidates", "weights")}
            | {"guidance_interval": list(rs.guidance_interval), "video_cfg": rs.video_cfg}
            | {"declick": rs.declick, "gate": rs.gate}
            | {"model": model},
            seed=best.seed,
            scores=best.scores,
            total=best.total,
            info={"seconds": round(seconds, 3), "candidates": [c.summary() for c in ranked], "model": model},
        )
        view = self._takes_view(self.store.get_clip(clip.id), take.id) | {"seed": settings["seed"]}
        return view | {"message": _msg_ok(f"Rendered take {take.number}: total {take.total:.3f} in {seconds:.1f} s.")}

    def render_model(self, project_id: int):
        """(bundle, name) a take of the project renders with: the project's chosen trained model when it is
        still offered, else the studio's model (shared, read-only, like every loaded bundle)."""
        from engine.bundle import load_bundle

        choice = (self.store.get_project(project_id).settings or {}).get("render_model", "studio")
        for run in self.store.list_runs(project_id) if choice != "studio" else []:
            if f"run-{run.id}" == choice and run.offered:
                return load_bundle(run.folder), run.label
        bundle = self._engine["bundle"]
        return bundle, bundle.name

    def _start(self, session: str) -> _Run:
        run = _Run()
        with self._cancel_lock:
            self._runs[session] = run
        return run

    def _finish(self, session: str, run: _Run) -> None:
        with self._cancel_lock:
            if self._runs.get(session) is run:
                del self._runs[session]
        run.done.set()

    def cancel_render(self, session: str = "", wait: float = 60.0) -> dict:
        """Stop this session's render at its next sampler step (no take is written) and wait up to ``wait``
        seconds for it to stop. The reply is the render's own final message, so whichever of the two
        replies the page shows last, it shows what happened (a render that had just finished says so)."""
        with self._cancel_lock:
            run = self._runs.get(session)
        if run is None:
            return {"message": "No render is running in this window."}
        run.cancel.set()
        if run.done.wait(wait):
            return {"message": run.message}
        return {"message": "Cancelling the render…"}

    # --------------------------------------------------------------------------------- takes

    def pick_take(self, clip_id: int | None, take_id: int | None) -> dict:
        if take_id is None:
            return self.take_view(None)
        take = self.store.get_take(take_id)
        if take.clip_id != clip_id:
            raise UserInputError("that take belongs to another clip")
        return self.take_view(take.id)

    def pick_row(self, clip_id: int | None, row: int | None) -> dict:
        """A click on row ``row`` of the takes table picks that take."""
        if clip_id is None or row is None:
            return {}
        takes = self.store.list_takes(clip_id)
        if not 0 <= row < len(takes):
            return {}
        choices = [(f"{t.label} · {t.total:.3f}", t.id) for t in takes]
        return {"take_pick": _choices_update(choices, takes[row].id)} | self.take_view(takes[row].id)

    def rate_take(self, clip_id: int | None, take_id: int | None, rating: int) -> dict:
        """Star (1), reject (-1) or clear (0) the chosen take."""
        if take_id is None:
            raise UserInputError("pick a take first")
        take = self.store.rate_take(take_id, rating)
        word = {1: "Starred", -1: "Rejected", 0: "Cleared the rating of"}[rating]
        view = self.clip_view(take.clip_id, take.id)
        return {k: view[k] for k in ("takes_table", "take_pick", "take_info", "compare_a", "compare_b")} | {
            "message": _msg_ok(f"{word} take {take.number}.")
        }

    def compare(self, clip_id: int | None, a: int | None, b: int | None) -> dict:
        """Spectrograms of the original audio (if any) and takes ``a`` and ``b`` side by side, and their
        stereo position over time, on the video's time axis."""
        from app.plots import compare_spectrograms, stereo_position
        from engine.media import read_wav

        if clip_id is None:
            return {"spectrograms": None, "positions": None}
        clip = self.store.get_clip(clip_id)
        items = []
        if clip.original_audio is not None:
            items.append(("original audio", *read_wav(clip.original_audio)))
        for take_id in dict.fromkeys(t for t in (a, b) if t is not None):
            take = self.store.get_take(take_id)
            if take.clip_id != clip.id:
                raise UserInputError("compare takes of the open clip")
            items.append((f"{take.label} ({take.total:.3f})", *read_wav(take.path)))
        if not items:
            return {"spectrograms": None, "positions": None}
        return {
            "spectrograms": compare_spectrograms(items, clip.duration),
            "positions": stereo_position(items, clip.duration),
        }

    # -------------------------------------------------------------------------------- export

    def export_take(self, take_id: int | None, formats: list[str], normalise: bool, lufs: float | None) -> dict:
        """Write the chosen take in the chosen formats into a new export folder of its clip."""
        from engine.export import export_take
        from engine.media import read_wav

        if take_id is None:
            raise UserInputError("pick a take to export")
        chosen = tuple(EXPORT_FORMATS[f] for f in formats or [] if f in EXPORT_FORMATS)
        if not chosen:
            raise UserInputError("choose at least one export format")
        if normalise and (lufs is None or not math.isfinite(float(lufs))):
            raise UserInputError("give a loudness target in LUFS, e.g. -23 (broadcast) or -14 (streaming)")
        take = self.store.get_take(take_id)
        clip = self.store.get_clip(take.clip_id)
        audio, sr = read_wav(take.path)

        def write(folder: Path) -> dict:
            return export_take(
                audio,
                sr,
                folder,
                f"{Path(clip.name).stem[:40] or 'clip'}-take{take.number}",
                duration=clip.duration,
                formats=chosen,
                video=clip.source,
                cot=take.cot,
                lufs_target=float(lufs) if normalise else None,
            )

        folder, report = self.store.write_export(take, f"take{take.number}", write)
        files = [str(folder / Path(p).name) for p in report["files"].values()]
        level, note = report["level"], ""
        if level["lufs"] is not None:  # silence has no loudness to report
            note = f" {level['lufs']:.1f} LUFS, true peak {level['true_peak_dbtp']:.1f} dBTP"
            note += f" (peaks limited by {level['limited_db']:.1f} dB)." if level["limited_db"] > 0 else "."
        return {"export_files": files, "message": _msg_ok(f"Exported take {take.number} to {folder.name}.{note}")}


EXPORT_FORMATS = {  # page label -> engine.export format
    "WAV 48 kHz 24-bit": "wav",
    "FLAC 48 kHz 24-bit": "flac",
    "MP4 (video copied + take)": "mp4",
    "CoT JSON": "cot",
}


# ------------------------------------------------------------------------------------ helpers


def checked_cot(fields) -> dict:
    """The five fields (semantic, temporal, aesthetic, spatial, negative) as a CoT dict, whitespace tidied
    by `engine.cot.validate_cot`. A block that validate_cot would cut, or that is longer than the text
    encoder's BLOCK_TOKENS tokens, is refused instead (a `UserInputError` naming the block, its length and the
    limit), so nothing is ever silently shortened."""
    values = ["" if v is None else str(v) for v in fields]
    if len(values) != len(FIELDS):
        raise ValueError(f"expected {len(FIELDS)} CoT fields, got {len(values)}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cot = validate_cot(dict(zip(FIELDS, values)))
    if caught:
        too_long = [
            f"{f} has {len(' '.join(v.split()))} characters"
            for f, v in zip(FIELDS, values)
            if len(" ".join(v.split())) > (MAX_NEGATIVE_CHARS if f == "negative" else MAX_BLOCK_CHARS)
        ]
        raise UserInputError(
            f"block too long: {'; '.join(too_long)} (at most {MAX_BLOCK_CHARS} per block, {MAX_NEGATIVE_CHARS} "
            f"for negative; validate_cot says: {caught[0].message}); shorten it, nothing was saved"
        )
    out = cot.to_dict()
    out.setdefault("negative", "")
    over = [f"{f} is {n} tokens" for f in FIELDS if out[f] and (n := block_tokens(out[f])) > BLOCK_TOKENS]
    if over:
        raise UserInputError(
            f"block too long for the text encoder: {'; '.join(over)} (it reads at most {BLOCK_TOKENS} tokens per "
            "block, its two markers included, and would cut the rest); shorten it, nothing was saved"
        )
    return out


def block_tokens(text: str) -> int:
    """How many tokens the text encoder (all-MiniLM-L6-v2) reads for ``text``, [CLS] and [SEP] included."""
    from engine.text_encoder import count_tokens

    return count_tokens(text)


def checked_settings(w_sem, w_tem, w_aes, w_spa, candidates, seed, seed_locked, steps, guidance) -> dict:
    """The page's settings as stored; `UserInputError` naming the first bad value."""
    raw = dict(zip(DIMENSIONS, (w_sem, w_tem, w_aes, w_spa)))
    for name, w in raw.items():
        if w is None or not isinstance(w, int | float) or not math.isfinite(w):
            raise UserInputError(f"the {name} weight must be a number")
        if w < 0:
            raise UserInputError(f"the {name} weight is {w:g}: weights must be 0 or more")
    weights = check_weights(raw)
    out = {"weights": weights}
    for name, value in (("candidates", candidates), ("steps", steps), ("guidance", guidance)):
        lo, hi = LIMITS[name]
        if value is None or not isinstance(value, int | float) or not lo <= value <= hi:
            raise UserInputError(f"{name} must be between {lo} and {hi}, got {value}")
        out[name] = float(value) if name == "guidance" else int(value)
        if name != "guidance" and out[name] != value:
            raise UserInputError(f"{name} must be a whole number, got {value}")
    if seed is None or not isinstance(seed, int | float) or int(seed) != seed or not 0 <= seed <= MAX_SEED - 8:
        raise UserInputError(f"the seed must be a whole number between 0 and {MAX_SEED - 8}, got {seed}")
    return out | {"seed": int(seed), "seed_locked": bool(seed_locked)}


def _step_reporter(progress, flag: threading.Event, candidates: int):
    """The sampler's progress callback: raises `RenderCancelled` once ``flag`` is set, else reports."""

    def report(done: int, total: int) -> None:
        if flag.is_set():
            raise RenderCancelled
        if progress:
            what = f"rendering {candidates} candidates" if candidates > 1 else "rendering"
            progress(done / max(total, 1), f"{what}: step {done}/{total}")

    return report


def inspect_video(source: Path, folder: Path) -> ClipMedia:
    """What the store keeps of an uploaded video: its facts, its own audio (float WAV at 44.1 kHz), and
    an MP4 preview with the picture stream copied when the container is not one browsers play."""
    from engine.media import mux_audio, write_wav
    from engine.video_io import SHARED_SIZE, decoded_frames, load_audio_track

    info = decoded_frames(source, SHARED_SIZE)[2]  # the one decode that planning, rendering and scoring reuse
    if info.duration <= 0:
        raise UserInputError(f"{source.name} has zero length")
    media = ClipMedia(
        duration=info.duration,
        fps=info.fps,
        width=info.width,
        height=info.height,
        n_frames=info.n_frames,
        audio_channels=info.audio_channels,
        audio_rate=info.audio_rate,
    )
    audio = load_audio_track(source) if info.audio_channels else None
    if audio is not None and len(audio):
        write_wav(folder / "original.wav", audio, 44100, subtype="FLOAT")
        media.original_audio = "original.wav"
    if source.suffix.lower() not in BROWSER_CONTAINERS:
        track = audio if audio is not None and len(audio) else np.zeros((round(info.duration * 44100), 2), np.float32)
        try:
            mux_audio(source, track, 44100, folder / "preview.mp4")
            media.preview = "preview.mp4"
        except UserInputError:
            pass  # a stream MP4 cannot hold: the browser gets the source itself
    return media


def media_summary(clip: Clip) -> str:
    m = clip.media
    audio = f"{m['audio_channels']} ch audio at {m['audio_rate']} Hz" if m.get("audio_channels") else "no audio"
    return f"{m['duration']:.3f} s · {m['fps']:.3f} fps · {m['width']}×{m['height']} · {audio}"


def take_row(t: Take) -> list:
    s = t.settings
    when = t.created.replace(tzinfo=dt.UTC).astimezone().strftime("%Y-%m-%d %H:%M:%S")
    rating = {1: "★", -1: "✗"}.get(t.rating, "")
    return [
        f"Take {t.number}",
        rating,
        round(t.total, 3),
        *(round(t.scores.get(d, float("nan")), 3) for d in DIMENSIONS),
        t.seed,
        s.get("steps"),
        s.get("guidance"),
        s.get("candidates"),
        when,
    ]


def take_summary(t: Take) -> str:
    s = t.settings
    weights = ", ".join(f"{d} {s['weights'].get(d, 0):g}" for d in DIMENSIONS)
    scores = " · ".join(f"{d} {t.scores.get(d, float('nan')):.3f}" for d in DIMENSIONS)
    cot = "\n".join(f"- **{f}**: {as_text(t.cot.get(f) or '—')}" for f in FIELDS)
    when = t.created.replace(tzinfo=dt.UTC).astimezone().strftime("%Y-%m-%d %H:%M:%S")
    return (
        f"**{t.label}** — total **{t.total:.3f}** (weights {weights})  \n"
        f"scores: {scores}  \n"
        f"seed {t.seed} · {s.get('steps')} steps · guidance {s.get('guidance')} · "
        f"{s.get('candidates')} candidate(s) · model {as_text(s.get('model'))} · {when} · "
        f"{t.info.get('seconds', 0):.1f} s\n\n"
        f"{cot}"
    )


def _need_project(project_id: int | None) -> int:
    if project_id is None:
        raise UserInputError("create or open a project first")
    return project_id


def _need_clip(clip_id: int | None) -> int:
    if clip_id is None:
        raise UserInputError("import a video first")
    return clip_id


def _choices_update(choices: list, value) -> dict:
    import gradio as gr

    return gr.update(choices=choices, value=value)


def _shown() -> dict:
    import gradio as gr

    return gr.update(visible=True)


def _hidden() -> dict:
    import gradio as gr

    return gr.update(visible=False)


def _no_questions() -> dict:
    """Plan's and Render's questions put away (another clip is shown: they were about the one before)."""
    return {"plan_confirm_row": _hidden(), "render_confirm_row": _hidden()}
