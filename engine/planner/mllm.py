"""The multimodal-LLM planner backend: a Qwen2.5-VL-class video-text model writes the four CoT blocks.

Used only when the user asks for it: the model loads through huggingface-hub (`MllmPlanner.from_config`)
and nothing heavy is imported, let alone downloaded, when this module is imported.

Two steps, after PrismAudio (appendix D.2):

1. the model sees frames sampled uniformly over the whole clip, is told the clip's duration and the
   time of every frame (temporal answers need absolute seconds), and is asked for one JSON object with
   the four blocks (semantic, temporal, aesthetic, spatial) and optionally ``negative``;
2. only when that answer holds no block (one unstructured description), the same model, text only, is
   asked to split the description into four self-contained blocks, each about its own dimension.

`parse_answer` reads what models really write (JSON in fences or prose, single quotes, trailing commas,
truncated objects, headed sections); when both answers fail, `fallback_cot` puts the whole cleaned
answer into the semantic block so the user still has something to edit.

Frames reach the model through the processor's chat template (a ``{"type": "video"}`` item, frames as
``videos=``). transformers' Qwen2-VL video processor needs torchvision; without it `from_config` uses
`QwenFramesProcessor`, which patchifies the already sampled and sized frames the same way.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from engine.cot import BLOCKS, Cot
from engine.errors import UserInputError
from engine.planner.parse import clean_answer, fallback_cot, parse_answer
from engine.video_io import probe

Progress = Callable[[float, str], None]  # (fraction done in [0, 1], what is happening now)

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # pixel normalisation of Qwen2-VL's vision tower (OpenAI CLIP)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# ChatML as Qwen2/2.5-VL write it; used when a tokenizer ships no chat template of its own.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif item['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@dataclass
class MllmPlannerConfig:
    """Settings of the multimodal-LLM planner. Validated on creation (they may come from the user)."""

    model_id: str = "Qwen/Qwen2.5-VL-7B-Instruct"  # hub id or local folder of a Qwen2.5-VL-class model
    revision: str | None = None  # hub branch, tag or commit to pin; None = the default branch
    local_files_only: bool = False  # True: never download, use the local hub cache only
    fps: float = 2.0  # frames per second of video to show the model (Qwen2.5-VL's usual rate)
    max_frames: int = 32  # at most this many frames; longer clips get a lower rate, always the whole clip
    frame_size: int = 448  # frames are resized to about frame_size**2 pixels (aspect kept, never enlarged)
    size_multiple: int = 28  # each frame side is a multiple of this (Qwen2-VL: patch 14 x merge 2)
    max_new_tokens: int = 512  # generated tokens per answer
    temperature: float = 0.0  # 0 = greedy decoding (deterministic); > 0 samples at this temperature
    top_p: float = 0.9  # nucleus mass when sampling (temperature > 0); unused when greedy
    device: str = "auto"  # "auto" (cuda when available, else cpu), "cpu", "cuda", "cuda:1", ...
    dtype: str = "auto"  # "auto" (bfloat16 on cuda, float32 on cpu), "float32", "bfloat16" or "float16"
    split_step: bool = True  # second, text-only call that splits an unstructured answer (PrismAudio D.2)
    ask_negative: bool = True  # also ask for "negative": sounds that must not be heard (e.g. speech, music)
    block_words: int = 60  # asked length of each block in words (blocks are cut at MAX_BLOCK_CHARS anyway)

    def __post_init__(self) -> None:
        if not self.model_id.strip():
            raise UserInputError("planner model_id is empty; give a hub id such as Qwen/Qwen2.5-VL-7B-Instruct")
        for name in ("fps", "max_frames", "max_new_tokens", "block_words"):
            if not getattr(self, name) > 0:
                raise UserInputError(f"planner {name} must be positive, got {getattr(self, name)}")
        if self.frame_size < self.size_multiple or self.size_multiple < 1:
            raise UserInputError(f"planner frame_size must be at least {self.size_multiple}, got {self.frame_size}")
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise UserInputError(
                f"planner needs temperature >= 0 and 0 < top_p <= 1, got {self.temperature}, {self.top_p}"
            )
        if self.dtype not in ("auto", "float32", "bfloat16", "float16"):
            raise UserInputError(f"planner dtype must be auto, float32, bfloat16 or float16, got {self.dtype!r}")


# ----------------------------------------------------------------------------------------------- frames


@dataclass
class SampledVideo:
    """Frames spread uniformly over a whole clip, with the instant each one shows."""

    frames: np.ndarray  # (F, H, W, 3) uint8 RGB, H and W multiples of the config's size_multiple
    times: np.ndarray  # (F,) float64 seconds from the first frame: the instant frame k shows
    duration: float  # seconds of picture in the file

    @property
    def rate(self) -> float:
        """Frames per second of the sampled sequence (F / duration)."""
        return len(self.frames) / self.duration

    def metadata(self) -> dict:
        """transformers' video metadata for these frames: a clip of F frames at `rate` (its
        ``sampled_fps``), so Qwen2.5-VL's temporal positions land on absolute seconds."""
        n = len(self.frames)
        return {"total_num_frames": n, "fps": self.rate, "duration": self.duration, "frames_indices": list(range(n))}


def frame_shape(width: int, height: int, frame_size: int, multiple: int) -> tuple[int, int]:
    """(height, width) in pixels of a frame scaled to about ``frame_size**2`` pixels with its aspect kept,
    never enlarged, each side rounded down to a multiple of ``multiple`` (at least one multiple)."""
    scale = min(1.0, frame_size / math.sqrt(width * height))
    fit = lambda side: max(multiple, int(side * scale + 1e-6) // multiple * multiple)
    return fit(height), fit(width)


def _rgb(frame, height: int, width: int) -> np.ndarray:
    """(height, width, 3) uint8 of a decoded frame as displayed (rotation applied as in engine.video_io)."""
    rot = int(getattr(frame, "rotation", 0) or 0) % 360
    h, w = (width, height) if rot in (90, 270) else (height, width)  # size before the display rotation
    img = frame.reformat(width=w, height=h, format="rgb24", interpolation="AREA", threads=1).to_ndarray()
    return np.ascontiguousarray(np.rot90(img, k=rot // 90) if rot else img)


def _frames_at(path: Path, times: np.ndarray, height: int, width: int) -> np.ndarray:
    """(F, height, width, 3) uint8: for each instant of ``times`` (s from the first frame) the frame showing
    then, in one decoding pass that converts only those frames (memory does not grow with the clip)."""
    picked, shown, shown_rgb = [], None, None
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        first = None
        try:
            for frame in container.decode(stream):
                if frame.time is None:
                    continue
                first = frame.time if first is None else first
                while shown is not None and len(picked) < len(times) and frame.time - first > times[len(picked)] + 1e-6:
                    shown_rgb = shown_rgb if shown_rgb is not None else _rgb(shown, height, width)
                    picked.append(shown_rgb)
                if len(picked) == len(times):
                    break
                shown, shown_rgb = frame, None
        except av.error.InvalidDataError:
            pass  # a truncated file: the last decoded frame shows until the end
    if len(picked) < len(times):  # instants after the last frame's start show the last frame
        picked += [shown_rgb if shown_rgb is not None else _rgb(shown, height, width)] * (len(times) - len(picked))
    return np.stack(picked)


def sample_frames(path: str | Path, cfg: MllmPlannerConfig) -> SampledVideo:
    """Frames at ``cfg.fps`` over the whole clip, at most ``cfg.max_frames`` (and at least 2, one temporal
    patch), each the one showing at the middle of its equal share of the clip; sized by `frame_shape`.

    Raises `UserInputError` for a missing or unreadable video (`engine.video_io.probe`).
    """
    info = probe(path)
    n = min(cfg.max_frames, max(2, math.ceil(info.duration * cfg.fps - 1e-6)))
    times = (np.arange(n) + 0.5) * info.duration / n  # (F,) s
    height, width = frame_shape(info.width, info.height, cfg.frame_size, cfg.size_multiple)
    return SampledVideo(_frames_at(Path(path), times, height, width), times, info.duration)


# ----------------------------------------------------------------------------------------------- prompts

SYSTEM_PROMPT = "You are a foley supervisor. You plan the sound of film scenes for a sound designer."

# What each block is about (PrismAudio appendix D.2), shared by both prompts.
BLOCK_GUIDE = {
    "semantic": "the audio events and their sources: what makes each sound, the action, and the sound's "
    "characteristics such as type, intensity and material (e.g. hard leather soles on wet concrete)",
    "temporal": "the order and timing of the events relative to what happens on screen: onsets, durations, "
    "repetitions and silences, with approximate times in seconds from the start of the clip",
    "aesthetic": "the qualities of the sound: naturalness, fidelity, richness, the room and its reverberation, "
    "tone and brightness",
    "spatial": "where each source sits and how it moves: left, centre or right of the stereo image, near or far",
}
NEGATIVE_GUIDE = "sounds that must not be heard in this clip, such as speech or music (may be empty)"


def _keys_and_guide(cfg: MllmPlannerConfig) -> tuple[str, str]:
    """('"semantic", "temporal", ...', one '- "key": what it holds' line per key)."""
    guide = dict(BLOCK_GUIDE) | ({"negative": NEGATIVE_GUIDE} if cfg.ask_negative else {})
    keys = ", ".join(f'"{k}"' for k in guide)
    return keys, "\n".join(f'- "{k}": {text}.' for k, text in guide.items())


def describe_prompt(video: SampledVideo, cfg: MllmPlannerConfig) -> str:
    """The first question (goes with the frames): all four dimensions at once, as one JSON object."""
    keys, guide = _keys_and_guide(cfg)
    times = ", ".join(f"{t:.2f}" for t in video.times)
    return (
        f"This video clip lasts {video.duration:.2f} seconds. You see {len(video.times)} frames taken uniformly "
        f"over the whole clip, at {times} seconds.\n"
        "Plan the sound this clip needs, judging by the picture, in separate blocks; each block covers only "
        f"its own dimension:\n{guide}\n"
        f"Write each block as plain sentences, at most {cfg.block_words} words. Give times in seconds from the "
        f"start of the clip (0 to {video.duration:.2f}).\n"
        f"Answer with one JSON object with exactly the keys {keys} and string values, and nothing else."
    )


def split_prompt(answer: str, duration: float, cfg: MllmPlannerConfig) -> str:
    """The second, text-only question (PrismAudio D.2): split one description into self-contained blocks."""
    keys, guide = _keys_and_guide(cfg)
    return (
        f"Here is a description of the sound a {duration:.2f}-second video clip needs:\n\n{answer.strip()}\n\n"
        f"Split it into separate blocks, each about its own dimension only:\n{guide}\n"
        "Each block must read on its own: name the sound source again instead of writing 'it'. Keep every fact "
        "of the description in the block it belongs to, add nothing new, and leave a block empty when the "
        "description says nothing about it.\n"
        f"Answer with one JSON object with exactly the keys {keys} and string values, and nothing else."
    )


def _messages(prompt: str, *, with_video: bool) -> list[dict]:
    """Chat messages for the processor's template; the video item comes before the question."""
    content = ([{"type": "video"}] if with_video else []) + [{"type": "text", "text": prompt}]
    return [
        {"role": "system", "content": [{"type": "text", "text": SYSTEM_PROMPT}]},
        {"role": "user", "content": content},
    ]


# ----------------------------------------------------------------------------------------------- processor


class QwenFramesProcessor:
    """Qwen2-VL / Qwen2.5-VL model inputs from a chat prompt and frames that are already sampled and sized
    (`sample_frames`), needing no torchvision; the subset of transformers' processor API the planner uses.

    Patch layout, placeholder count, ``second_per_grid_ts`` and ``mm_token_type_ids`` follow transformers'
    ``Qwen2_5_VLProcessor`` with ``Qwen2VLVideoProcessor`` (the tests compare them where torchvision exists).
    """

    video_token = "<|video_pad|>"

    def __init__(
        self,
        tokenizer,
        *,
        patch_size: int = 14,
        merge_size: int = 2,
        temporal_patch_size: int = 2,
        image_mean: tuple[float, ...] = CLIP_MEAN,
        image_std: tuple[float, ...] = CLIP_STD,
        chat_template: str | None = None,
    ) -> None:
        self.tokenizer = tokenizer
        self.patch_size, self.merge_size, self.temporal_patch_size = patch_size, merge_size, temporal_patch_size
        self.image_mean = np.asarray(image_mean, dtype=np.float32)
        self.image_std = np.asarray(image_std, dtype=np.float32)
        self.chat_template = chat_template or getattr(tokenizer, "chat_template", None) or CHAT_TEMPLATE
        self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)

    def apply_chat_template(self, messages: list[dict], *, add_generation_prompt: bool = True, tokenize: bool = False):
        """The prompt text of chat ``messages`` (one ``<|video_pad|>`` per video item)."""
        if tokenize:
            raise ValueError("QwenFramesProcessor.apply_chat_template only renders text (tokenize=False)")
        return self.tokenizer.apply_chat_template(
            messages, chat_template=self.chat_template, add_generation_prompt=add_generation_prompt, tokenize=False
        )

    def patchify(self, frames: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int]]:
        """(F, H, W, 3) uint8 frames -> normalised patches (T' * H' * W', 3 * tp * p * p) float32 and the grid
        (T', H', W') = (ceil(F / tp), H / p, W / p); the last frame repeats to fill the last temporal patch."""
        p, m, tp = self.patch_size, self.merge_size, self.temporal_patch_size
        n, h, w, c = frames.shape
        if h % (p * m) or w % (p * m):
            raise ValueError(f"frame size must be a multiple of {p * m} pixels, got {frames.shape=}")
        x = (frames.astype(np.float32) / 255.0 - self.image_mean) / self.image_std  # (F, H, W, 3)
        x = x.transpose(0, 3, 1, 2)  # (F, 3, H, W)
        if pad := -n % tp:
            x = np.concatenate([x, np.repeat(x[-1:], pad, axis=0)])
        gt, gh, gw = x.shape[0] // tp, h // p, w // p
        x = x.reshape(gt, tp, c, gh // m, m, p, gw // m, m, p)
        x = x.transpose(0, 3, 6, 4, 7, 2, 1, 5, 8)  # (T', H'/m, W'/m, m, m, 3, tp, p, p): merge groups together
        return np.ascontiguousarray(x.reshape(gt * gh * gw, c * tp * p * p)), (gt, gh, gw)

    def __call__(self, text: list[str], videos: list[np.ndarray] | None = None, video_metadata=None, **unused):
        """Model inputs (batch of one) as a transformers ``BatchFeature`` of tensors: input_ids, attention_mask,
        mm_token_type_ids (L,) and, with a video, pixel_values_videos, video_grid_thw (1, 3) and
        second_per_grid_ts (1,) (seconds per temporal patch, from the metadata's ``fps``)."""
        from transformers import BatchFeature

        n_videos = len(videos or [])
        if len(text) != 1 or n_videos > 1 or text[0].count(self.video_token) != n_videos:
            raise ValueError(f"QwenFramesProcessor takes one prompt and at most one video, got {len(text)}, {n_videos}")
        prompt, data = text[0], {}
        if videos:
            patches, grid = self.patchify(np.asarray(videos[0]))
            fps = (video_metadata or [{}])[0].get("fps") or 2.0
            prompt = prompt.replace(self.video_token, self.video_token * (math.prod(grid) // self.merge_size**2))
            data = {
                "pixel_values_videos": patches,
                "video_grid_thw": [grid],
                "second_per_grid_ts": [self.temporal_patch_size / fps],
            }
        ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        types = [2 if t == self.video_token_id else 0 for t in ids]  # transformers: 0 text, 1 image, 2 video
        data |= {"input_ids": [ids], "attention_mask": [[1] * len(ids)], "mm_token_type_ids": [types]}
        return BatchFeature(data, tensor_type="pt")

    def batch_decode(self, ids, **kwargs) -> list[str]:
        return self.tokenizer.batch_decode(ids, **kwargs)


# ----------------------------------------------------------------------------------------------- planner


def _resolve_device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _resolve_dtype(name: str, device):
    import torch

    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return getattr(torch, name)


def _load_processor(cfg: MllmPlannerConfig):
    """The checkpoint's own processor when it can take videos; else `QwenFramesProcessor` over the checkpoint's
    tokenizer and image-processor settings (transformers' Qwen2-VL video processor needs torchvision)."""
    from transformers import AutoImageProcessor, AutoProcessor, AutoTokenizer

    hub = {"revision": cfg.revision, "local_files_only": cfg.local_files_only}
    try:
        processor = AutoProcessor.from_pretrained(cfg.model_id, **hub)
    except ImportError:
        processor = None
    if getattr(processor, "video_processor", None) is not None and hasattr(processor, "tokenizer"):
        if not processor.chat_template:  # a checkpoint without a processor template: its tokenizer's, or ChatML
            processor.chat_template = getattr(processor.tokenizer, "chat_template", None) or CHAT_TEMPLATE
        return processor
    tokenizer = AutoTokenizer.from_pretrained(cfg.model_id, **hub)
    images = AutoImageProcessor.from_pretrained(cfg.model_id, **hub)
    return QwenFramesProcessor(
        tokenizer,
        patch_size=images.patch_size,
        merge_size=images.merge_size,
        temporal_patch_size=images.temporal_patch_size,
        image_mean=tuple(images.image_mean),
        image_std=tuple(images.image_std),
    )


def _load_model(cfg: MllmPlannerConfig):
    """The video-text model (Qwen2.5-VL resolves to Qwen2_5_VLForConditionalGeneration), in eval mode."""
    from transformers import AutoModelForImageTextToText

    device = _resolve_device(cfg.device)
    model = AutoModelForImageTextToText.from_pretrained(
        cfg.model_id,
        revision=cfg.revision,
        local_files_only=cfg.local_files_only,
        dtype=_resolve_dtype(cfg.dtype, device),
        device_map=str(device),
    )
    return model.eval()


class MllmPlanner:
    """Writes a `Cot` for a video with a video-text model (see the module docstring for the two steps)."""

    def __init__(self, model, processor, cfg: MllmPlannerConfig | None = None) -> None:
        """``model``: anything with transformers' ``generate`` (and ``device``); ``processor``: transformers'
        Qwen2.5-VL processor or a `QwenFramesProcessor`. Both are used as given (tests pass tiny ones)."""
        self.model, self.processor, self.cfg = model, processor, cfg or MllmPlannerConfig()

    @classmethod
    def from_config(cls, cfg: MllmPlannerConfig) -> MllmPlanner:
        """Load processor and model with ``from_pretrained`` (downloads unless ``cfg.local_files_only`` or
        HF_HUB_OFFLINE=1). A model that cannot be loaded is a `UserInputError` saying what to do."""
        try:
            processor = _load_processor(cfg)
            model = _load_model(cfg)
        except (OSError, ValueError) as exc:
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise UserInputError(
                f"cannot load the planner model {cfg.model_id!r} ({reason}); download it once with network "
                "access, or set model_id to a local folder"
            ) from None
        return cls(model, processor, cfg)

    def _generation_kwargs(self) -> dict:
        tokenizer = self.processor.tokenizer
        sampling = self.cfg.temperature > 0
        return {
            "max_new_tokens": self.cfg.max_new_tokens,
            "do_sample": sampling,
            "temperature": self.cfg.temperature if sampling else None,
            "top_p": self.cfg.top_p if sampling else None,
            "top_k": None,
            "pad_token_id": tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
        }

    def ask(self, prompt: str, video: SampledVideo | None = None, seed: int = 0) -> str:
        """One answer of the model to ``prompt`` (with the frames when ``video`` is given): only the newly
        generated tokens, decoded without special tokens. ``seed`` fixes sampling (temperature > 0) without
        touching the caller's random state."""
        import torch

        text = self.processor.apply_chat_template(
            _messages(prompt, with_video=video is not None), add_generation_prompt=True, tokenize=False
        )
        if video is None:
            inputs = self.processor(text=[text], return_tensors="pt")
        else:
            frames = {"videos": [video.frames], "video_metadata": [video.metadata()], "do_sample_frames": False}
            inputs = self.processor(text=[text], **frames, return_tensors="pt")  # frames already sampled
        device = getattr(self.model, "device", None) or torch.device("cpu")
        inputs = inputs.to(device)
        with torch.inference_mode(), torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)
            out = self.model.generate(**inputs, **self._generation_kwargs())  # (1, L + new)
        new = out[:, inputs["input_ids"].shape[1] :]  # (1, new)
        return self.processor.batch_decode(new, skip_special_tokens=True)[0]

    def plan(self, video_path: str | Path, progress: Progress | None = None, seed: int = 0) -> Cot:
        """The CoT of a video: ask with the frames; when the answer holds no block and ``cfg.split_step``, ask
        (text only) to split it; when that fails too, `fallback_cot`. ``progress(fraction, message)`` is
        called as the steps go; ``seed`` matters only when sampling (``cfg.temperature > 0``). Raises
        `UserInputError` for a bad video or an empty answer."""
        report = progress or (lambda fraction, message: None)
        report(0.0, "reading frames")
        video = sample_frames(video_path, self.cfg)
        report(0.1, f"asking {self.cfg.model_id} about {len(video.times)} frames")
        answer = self.ask(describe_prompt(video, self.cfg), video, seed)
        cot = parse_answer(answer)
        if cot is None and self.cfg.split_step and clean_answer(answer):
            report(0.6, "splitting the answer into the four blocks")
            cot = parse_answer(self.ask(split_prompt(answer, video.duration, self.cfg), seed=seed))
        if cot is None:
            cot = fallback_cot(answer)
        elif empty := [b for b in BLOCKS if not getattr(cot, b)]:
            warnings.warn(f"the planner left the {', '.join(empty)} block(s) empty; fill them in", stacklevel=2)
        report(1.0, "done")
        return cot
