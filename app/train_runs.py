"""Training runs of the studio: a project's footage, sound library and take ratings become a tuned model.

`TrainingManager` starts a run in a background thread (the page never waits for it), cancels it at its next
step (after a checkpoint) and resumes it from its last checkpoint, also after a restart of the server. A run
lives in the project's ``training/<uid>/`` folder; its row in the store holds the settings it started with,
its status and its result. The trainers work on deep copies of the shared model (`trainer.lora.adapters`,
`trainer.grpo.learn.build_policy`), so renders of other sessions keep using the shared bundle untouched.

What each method trains on, built when the run starts (and reused when it resumes):

- LoRA fine-tune and Fast-GRPO: the project's clips that have their own audio, each with the CoT shown in
  the Studio page (the designer's edit, else the planner's; a clip never planned is planned first and the
  plan saved, so it can be reviewed there), plus the library's sounds with their tags
  (`trainer.ingest`; GRPO uses the video windows only, with the project's reward weights);
- Flow-DPO: every starred take against every rejected take of the same clip rendered from the same CoT.

A finished run has passed (or been refused by) the FoleyBench check inside the trainer
(`trainer.bench_guard.guard`, the same as on the command line). Only a run whose model passed, or whose
check was switched off, is offered for rendering (`app.projects.Run.offered`).
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

from app.projects import ProjectStore, Run
from engine.cot import Cot, validate_cot
from engine.errors import UserInputError

log = logging.getLogger("foley.training")
METHODS = ("finetune", "grpo", "dpo")
DEFAULTS = {  # CPU-sized first runs; every value can be changed on the page
    "finetune": {"steps": 300, "lr": 1e-4, "lora_rank": 16, "held_out": 0.15, "bench_clips": 8, "batch": 4}
    | {"replay": 32, "distill": 0.0},
    "grpo": {"steps": 30, "lr": 1e-4, "lora_rank": 16, "held_out": 0.15, "bench_clips": 8, "group": 4},
    "dpo": {"steps": 150, "lr": 5e-5, "lora_rank": 16, "held_out": 0.15, "bench_clips": 8, "beta": 2000.0},
}
LIMITS = {"steps": (1, 100_000), "lr": (1e-7, 0.1), "lora_rank": (1, 256), "held_out": (0.0, 0.5)}
LIMITS |= {"bench_clips": (0, 200), "batch": (1, 64), "group": (2, 32), "beta": (1.0, 100_000.0)}
LIMITS |= {"replay": (0, 2000)}  # FoleyWorld clips mixed into a fine-tune's data (`trainer.ingest.replay_folder`)
LIMITS |= {"distill": (0.0, 1.0)}  # their target: ground truth (0) .. the start model's velocity (1)
GRPO_SAMPLE_STEPS = 12  # sampler steps of a GRPO rollout in the studio (the CLI default is the reference's 24)


def checked_config(method: str, values: dict, weights: dict | None = None) -> dict:
    """The settings of a run as stored: the method's defaults overridden by ``values``; `UserInputError`
    naming the first bad value."""
    if method not in METHODS:
        raise UserInputError(f"choose a method: {', '.join(METHODS)}")
    out = dict(DEFAULTS[method])
    for key, value in values.items():
        if key not in out or value is None:
            continue
        lo, hi = LIMITS[key]
        if not isinstance(value, int | float) or not lo <= value <= hi:
            raise UserInputError(f"{key.replace('_', ' ')} must be between {lo:g} and {hi:g}, got {value}")
        whole = key not in ("lr", "held_out", "beta", "distill")
        if whole and value != int(value):
            raise UserInputError(f"{key.replace('_', ' ')} must be a whole number, got {value}")
        out[key] = int(value) if whole else float(value)
    if out["bench_clips"] == 1:
        raise UserInputError("the FoleyBench check needs 0 clips (off) or at least 2")
    return out | ({"weights": dict(weights)} if method == "grpo" and weights else {})


@dataclass
class LiveRun:
    """What the page shows of a run this server is carrying out."""

    run_id: int
    stop: threading.Event = field(default_factory=threading.Event)  # set by Cancel
    history: list[dict] = field(default_factory=list)  # the trainer's log entries so far
    phase: str = "preparing the data"  # what it is doing, in words
    version: int = 0  # bumped with every change (the page redraws only then)
    thread: threading.Thread | None = None

    def note(self, phase: str | None = None, entry: dict | None = None) -> None:
        if entry is not None:
            self.history.append(entry)
        if phase is not None:
            self.phase = phase
        self.version += 1


class TrainingManager:
    """Starts, cancels and resumes the training runs of every project of one store (one per server)."""

    def __init__(self, store: ProjectStore, model: str) -> None:
        self.store = store
        self.model = model  # the start model of every run: the studio's model
        self._live: dict[int, LiveRun] = {}
        self._lock = threading.Lock()
        for run in store.runs_with_status("running"):  # interrupted by a restart: resumable
            store.update_run(run.id, "stopped", {"note": "interrupted (the server stopped); resume continues it"})

    # ----------------------------------------------------------------------------------- control

    def start(self, project_id: int, method: str, config: dict) -> Run:
        """Check that the project has data for ``method``, record the run and start it in the background."""
        self.check_data(project_id, method)
        with self._lock:
            busy = [r for r in self._live.values() if r.thread is not None and r.thread.is_alive()]
            if busy:
                raise UserInputError("a training run is already going on this server; wait for it or cancel it")
            run = self.store.create_run(project_id, method, config)
            self._launch(run, resume=False)
        return run

    def resume(self, run_id: int) -> Run:
        """Continue a stopped (or failed) run from its last checkpoint, with the settings it started with."""
        run = self.store.get_run(run_id)
        if run.status == "finished":
            raise UserInputError(f"{run.label} has finished; start a new run to train again")
        with self._lock:
            live = self._live.get(run.id)
            if live is not None and live.thread is not None and live.thread.is_alive():
                raise UserInputError(f"{run.label} is running")
            if any(r.thread is not None and r.thread.is_alive() for r in self._live.values()):
                raise UserInputError("another training run is going on this server; wait for it or cancel it")
            run = self.store.update_run(run.id, "running")
            self._launch(run, resume=True)
        return run

    def cancel(self, run_id: int) -> bool:
        """Ask a running run to stop at its next step (it checkpoints first); False when it is not running."""
        live = self._live.get(run_id)
        if live is None or live.thread is None or not live.thread.is_alive():
            return False
        live.stop.set()
        live.note("stopping at the next step")
        return True

    def wait(self, run_id: int, timeout: float | None = None) -> bool:
        """Wait for a run's thread to end (tests, shutdown); True when it has."""
        live = self._live.get(run_id)
        if live is None or live.thread is None:
            return True
        live.thread.join(timeout)
        return not live.thread.is_alive()

    def live(self, run_id: int) -> LiveRun | None:
        return self._live.get(run_id)

    def history(self, run: Run) -> list[dict]:
        """The run's log: live from this server, else from its train_log.jsonl."""
        live = self._live.get(run.id)
        if live is not None:
            return list(live.history)
        path = run.folder / "train_log.jsonl"
        lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
        entries = [json.loads(line) for line in lines if line.strip()]
        return [e | {"step": e.get("step", e.get("iteration", 0))} for e in entries]  # a GRPO log of before the loop

    def _launch(self, run: Run, resume: bool) -> None:
        live = LiveRun(run.id)
        live.history = self.history(run) if resume else []
        live.thread = threading.Thread(target=self._work, args=(run, live, resume), daemon=True, name=f"train-{run.id}")
        self._live[run.id] = live
        live.thread.start()

    # ------------------------------------------------------------------------------------- data

    def check_data(self, project_id: int, method: str) -> dict:
        """What the project holds for training; `UserInputError` when ``method`` has nothing to learn from."""
        summary = self.data_summary(project_id)
        if method == "dpo" and not summary["pairs"]:
            raise UserInputError("Flow-DPO learns from your ratings: star and reject takes of the same clip first")
        if method == "grpo" and not summary["videos"]:
            raise UserInputError("Fast-GRPO needs video clips with their own audio in the project")
        if method == "finetune" and summary["videos"] + summary["sounds"] == 0:
            raise UserInputError("add video clips with their own audio or library sounds before fine-tuning")
        return summary

    def data_summary(self, project_id: int) -> dict:
        clips = self.store.list_clips(project_id)
        with_audio = [c for c in clips if c.original_audio is not None]
        sounds = self.store.list_sounds(project_id)
        return {
            "videos": len(with_audio),
            "without_audio": len(clips) - len(with_audio),
            "unplanned": sum(1 for c in with_audio if not (c.edited or c.planned)),
            "seconds": sum(c.duration for c in with_audio) + sum(s.duration for s in sounds),
            "sounds": len(sounds),
            "pairs": len(self.store.preference_pairs(project_id)),
        }

    def _sources(self, project_id: int):
        """The ingest sources of a project: clips with their audio and current CoT, then library sounds."""
        from trainer.ingest import Source

        out = []
        for clip in self.store.list_clips(project_id):
            if clip.original_audio is None:
                continue
            cot = clip.edited or clip.planned or self._plan(clip)
            out.append(Source(f"clip{clip.id}", clip.source, "video", validate_cot(cot), "studio"))
        for sound in self.store.list_sounds(project_id):
            out.append(Source(f"sound{sound.id}", sound.path, "audio", Cot(sound.tags, "", "", ""), "tags"))
        return out

    def _plan(self, clip) -> dict:
        """Plan a clip that never was (the plan is saved: the designer sees and edits it in the Studio page)."""
        from engine.pipeline import FALLBACK_COT
        from engine.planner.default import has_planner, load_planner

        cot = (
            load_planner(self.model).plan(clip.source).to_dict() if has_planner(self.model) else FALLBACK_COT.to_dict()
        )
        cot.setdefault("negative", "")
        self.store.save_plan(clip.id, cot)
        return cot

    def _dataset(self, run: Run, live: LiveRun) -> Path:
        from engine.bundle import load_bundle
        from trainer.ingest import ingest

        folder = run.folder / "dataset"
        if (folder / "dataset.json").is_file():  # a resumed run trains on exactly the data it started with
            return folder
        sources = self._sources(run.project_id)
        report_progress = lambda done, total, name: live.note(f"preparing the data: {done}/{total} {name}")  # noqa: E731
        replay = int(run.config.get("replay", 0)) if run.method == "finetune" else 0
        if replay:  # the start model's world, replayed against forgetting
            from trainer.ingest import replay_folder

            shown = lambda done, total: live.note(f"writing FoleyWorld replay clips: {done}/{total}")  # noqa: E731
            sources += replay_folder(run.folder / "replay", replay, {s.id for s in sources}, progress=shown)
        report = ingest(folder, load_bundle(self.model), sources, progress=report_progress)
        self.store.update_run(run.id, result={"data": report.summary()})
        return folder

    def _pairs(self, run: Run) -> Path:
        from trainer.dpo import write_pairs

        path = run.folder / "pairs_source.json"
        if not path.is_file():
            pairs = project_pairs(self.store, run.project_id)
            write_pairs(path, pairs)
            self.store.update_run(run.id, result={"data": {"pairs": len(pairs)}})
        return path

    # ------------------------------------------------------------------------------------- work

    def _work(self, run: Run, live: LiveRun, resume: bool) -> None:
        """The thread of one run: data, training, result; every failure ends as a status and a message."""
        try:
            result = {"finetune": self._finetune, "dpo": self._dpo, "grpo": self._grpo}[run.method](run, live, resume)
        except (UserInputError, ValueError) as exc:
            self._fail(run, live, str(exc))
            return
        except Exception as exc:  # noqa: BLE001 - a thread's boundary: a status and the trace in the log
            log.exception("training run %s failed", run.id)
            self._fail(run, live, f"{exc.__class__.__name__}: {exc}")
            return
        if not result["finished"]:
            self.store.update_run(run.id, "stopped", {"step": result["step"]})
            live.note("stopped; resume continues from the last checkpoint")
            return
        summary = {k: v for k, v in result.items() if k not in ("history", "policy", "window_starts", "out")}
        done = self.store.update_run(run.id, "finished", summary)
        live.note("finished: " + ("offered for rendering" if done.offered else "not offered (FoleyBench check failed)"))

    def _fail(self, run: Run, live: LiveRun, message: str) -> None:
        self.store.update_run(run.id, "failed", {"error": message})
        live.note(f"failed: {message}")

    def _reporter(self, live: LiveRun, total: int):
        """The trainer's progress callback: log entries into the live run (`trainer.loop`: GRPO's steps are
        its iterations)."""

        def report(entry: dict) -> None:
            phase = entry.get("phase")
            if phase == "bench":
                live.note(f"FoleyBench check: {entry['done']}/{entry['total']} renders")
            elif phase == "eval" and entry.get("step") == 0:
                live.note("held-out evaluation of the start model", entry | {"steps": total})
            elif phase != "done":
                live.note(f"training: step {entry['step']}/{total}", entry | {"steps": total})

        return report

    def _lora_fields(self, run: Run, cfg: dict) -> dict:
        from trainer.bench_guard import BenchCheck

        steps = cfg["steps"]
        every = max(1, steps // 10)
        fields = dict(model=self.model, out=str(run.folder), steps=steps, lr=cfg["lr"], lora_rank=cfg["lora_rank"])
        fields |= dict(held_out=cfg["held_out"], eval_every=every, ckpt_every=every, log_every=max(1, steps // 50))
        return fields | dict(warmup=min(50, max(1, steps // 10)), bench=BenchCheck(clips=cfg["bench_clips"]))

    def _finetune(self, run: Run, live: LiveRun, resume: bool) -> dict:
        from trainer.finetune import FinetuneConfig, finetune

        dataset = self._dataset(run, live)
        distill = float(run.config.get("distill", 0.0))  # runs stored before the setting existed: none
        fields = self._lora_fields(run, run.config)
        cfg = FinetuneConfig(dataset=str(dataset), batch=run.config["batch"], distill=distill, **fields)
        return finetune(cfg, progress=self._reporter(live, run.config["steps"]), resume=resume, stop=live.stop.is_set)

    def _dpo(self, run: Run, live: LiveRun, resume: bool) -> dict:
        from trainer.dpo import DpoConfig, train_dpo

        pairs = self._pairs(run)
        cfg = DpoConfig(pairs=str(pairs), beta=run.config["beta"], batch=4, **self._lora_fields(run, run.config))
        return train_dpo(cfg, progress=self._reporter(live, run.config["steps"]), resume=resume, stop=live.stop.is_set)

    def _grpo(self, run: Run, live: LiveRun, resume: bool) -> dict:
        from trainer.bench_guard import BenchCheck
        from trainer.grpo.learn import GrpoConfig, train_grpo

        c, dataset = run.config, self._dataset(run, live)
        every = max(1, c["steps"] // 5)
        cfg = GrpoConfig(
            model=self.model,
            out=str(run.folder),
            dataset=str(dataset),
            held_out=c["held_out"],
            iterations=c["steps"],
            group=c["group"],
            minibatch=c["group"],
            steps=GRPO_SAMPLE_STEPS,
            weights=c.get("weights") or GrpoConfig().weights,
            lr=c["lr"],
            lora_rank=c["lora_rank"],
            eval_every=every,
            ckpt_every=every,
            eval_clips=4,
            cpu=True,
            bench=BenchCheck(clips=c["bench_clips"]),
        )
        result = train_grpo(
            cfg, progress=self._reporter(live, run.config["steps"]), resume=resume, stop=live.stop.is_set
        )
        return {k: v for k, v in result.items() if k != "policy"} | {"step": result["iterations"]}


# ----------------------------------------------------------------------------------------- pairs


def project_pairs(store: ProjectStore, project_id: int):
    """The project's preference pairs (`app.projects.ProjectStore.preference_pairs`) for `trainer.dpo`."""
    from trainer.dpo import PreferencePair

    return [
        PreferencePair(str(clip.source), dict(w.cot), str(w.path), str(lo.path), f"clip{clip.id}")
        for clip, w, lo in store.preference_pairs(project_id)
    ]


def write_project_pairs(settings, project_name: str, out: Path) -> Path:
    """``train dpo --project NAME``: the named project's pairs as a pairs file at ``out``."""
    from trainer.dpo import write_pairs

    store = ProjectStore(settings.projects_dir, settings.db_url)
    try:
        match = [p for p in store.list_projects() if p.name.casefold() == project_name.casefold()]
        if not match:
            raise UserInputError(f"no project named {project_name!r} in {settings.projects_dir}")
        pairs = project_pairs(store, match[0].id)
        if not pairs:
            raise UserInputError(
                f"project {match[0].name!r} has no starred and rejected takes of the same clip and CoT"
            )
        return write_pairs(out, pairs)
    finally:
        store.close()
