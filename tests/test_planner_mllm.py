"""The multimodal-LLM planner backend: answer parsing, frame sampling, model inputs, and the two-step plan
with a stub model and with a tiny randomly initialised Qwen2.5-VL built here (nothing is downloaded)."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.cot import MAX_BLOCK_CHARS, Cot
from engine.errors import UserInputError
from engine.planner.mllm import (
    CLIP_MEAN,
    CLIP_STD,
    MllmPlanner,
    MllmPlannerConfig,
    QwenFramesProcessor,
    SampledVideo,
    describe_prompt,
    frame_shape,
    sample_frames,
    split_prompt,
)
from engine.planner.parse import clean_answer, fallback_cot, parse_answer
from engine.video_io import load_video
from tests.media_files import write_video

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>"]
SPECIAL += ["<|video_pad|>"]
HAS_TORCHVISION = importlib.util.find_spec("torchvision") is not None


def cot(semantic="", temporal="", aesthetic="", spatial="", negative="") -> Cot:
    return Cot(semantic, temporal, aesthetic, spatial, negative)


# ----------------------------------------------------------------------------------------------- parsing

PARSED = [
    (  # fenced JSON with prose around it
        'Here is the plan:\n```json\n{"semantic": "glass shatters on tile", "temporal": "impact at 1.2 s", '
        '"aesthetic": "bright, dry", "spatial": "left, close"}\n```\nLet me know!',
        cot("glass shatters on tile", "impact at 1.2 s", "bright, dry", "left, close"),
    ),
    (  # single quotes, apostrophe inside a value, trailing comma, key case and key names
        "{'Semantic': 'a dog's bark', 'Temporal block': 'at 0.5 s', 'AESTHETICS': 'natural',"
        " 'spatial_audio': 'right',}",
        cot("a dog's bark", "at 0.5 s", "natural", "right"),
    ),
    (  # truncated mid-value: what is there is kept, the missing blocks are empty
        '```json\n{"semantic_cot": "glass breaks", "temporal_cot": "at 1.2 s the gla',
        cot("glass breaks", "at 1.2 s the gla"),
    ),
    (  # nested wrapper, list and object values, a number, unknown keys dropped
        '{"cot": {"SEMANTIC": ["dog barks", "door slams."], "temporal": 1.5, "extra": "x",'
        ' "spatial": {"dog": "left", "door": "right"}, "aesthetic": null}}',
        cot("dog barks; door slams.", "1.5", "", "dog: left; door: right"),
    ),
    (  # negative, Python literals, unescaped quotes inside a value, "=" instead of ":"
        '{"semantic": "he shouts "stop" twice", "temporal": "at 0.3 s", "aesthetic": None, "spatial": True,'
        ' negative = "speech, music"}',
        cot('he shouts "stop" twice', "at 0.3 s", "", "yes", "speech, music"),
    ),
    (  # an echoed empty template loses to the filled object after it
        'Format: {"semantic": "", "temporal": "", "aesthetic": "", "spatial": ""}\n'
        'Answer: {"semantic": "rain on a tin roof", "temporal": "steady from 0 s", "aesthetic": "soft",'
        ' "spatial": "wide"}',
        cot("rain on a tin roof", "steady from 0 s", "soft", "wide"),
    ),
    (  # markdown: bold labels, a heading with text below, bullets, a numbered item, negative
        "**Semantic**: a dog barks\n**Temporal:** at 1 s\n\n### Aesthetic\nDry and close.\n- warm\n- natural\n"
        "1. Spatial - left to right\nNegative: speech, music",
        cot("a dog barks", "at 1 s", "Dry and close. warm; natural", "left to right", "speech, music"),
    ),
    (  # headings with a word and a parenthesis after the name; a closing code fence ends the last one
        "```\nSemantic content (what): keys jingle\nTemporal CoT: from 0.4 s to 1.1 s\n"
        "Aesthetic qualities: metallic\nSpatial image: centre\n```\nHope this helps.",
        cot("keys jingle", "from 0.4 s to 1.1 s", "metallic", "centre"),
    ),
    (  # all four on one line
        "Semantic: a lamp hums. Temporal: constant from 0 s. Aesthetic: clean. Spatial: centre.",
        cot("a lamp hums.", "constant from 0 s.", "clean.", "centre."),
    ),
    (  # JSON-like lines without braces
        'semantic: "a dog barks",\n"temporal": "twice, at 0.5 and 1.5 s",',
        cot("a dog barks", "twice, at 0.5 and 1.5 s"),
    ),
    (  # a reasoning model's thinking is ignored
        '<think>Semantic: not this</think>{"semantic": "footsteps on gravel", "spatial": "far"}',
        cot("footsteps on gravel", spatial="far"),
    ),
]


@pytest.mark.parametrize("text,expected", PARSED)
def test_parse_answer_reads_what_models_write(text, expected):
    assert parse_answer(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   \n",
        "A dog barks twice on the left, then a door slams.",
        '{"semantic": "", "temporal": "", "aesthetic": "", "spatial": ""}',
        '{"description": "a dog barks", "mood": "calm"}',
        "Negative: speech",
        "{" * 3000,
    ],
)
def test_parse_answer_is_none_without_a_block_with_text(text):
    assert parse_answer(text) is None


def test_parse_answer_cuts_over_long_blocks_with_a_warning():
    words = " ".join(["crunch"] * 200)  # 1399 characters
    with pytest.warns(UserWarning, match="truncated"):
        parsed = parse_answer(json.dumps({"semantic": words, "temporal": "at 1 s"}))
    assert parsed.semantic == " ".join(["crunch"] * 85) and len(parsed.semantic) == 594 <= MAX_BLOCK_CHARS
    assert parsed.temporal == "at 1 s"


def test_fallback_puts_the_cleaned_answer_in_the_semantic_block():
    with pytest.warns(UserWarning, match="semantic block"):
        got = fallback_cot("```\n**A dog** barks\n\ntwice.\n```")
    assert got == cot("A dog barks twice.")
    assert clean_answer("# Plan\n<think>hmm</think>**x**  y") == "Plan x y"
    with pytest.raises(UserInputError, match="no usable answer") as info:
        fallback_cot(" ``` \n ")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "kw,needle",
    [({"max_frames": 0}, "max_frames"), ({"temperature": -1.0}, "temperature"), ({"dtype": "int8"}, "dtype")],
)
def test_config_rejects_nonsense_in_one_line(kw, needle):
    with pytest.raises(UserInputError, match=needle):
        MllmPlannerConfig(**kw)


def test_import_loads_neither_torch_nor_transformers():
    code = "import sys, engine.planner.mllm; print(sorted({'torch', 'transformers'} & set(sys.modules)))"
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root)
    assert out.stdout.strip() == "[]"


# ----------------------------------------------------------------------------------------------- frames


def test_frame_shape_keeps_aspect_and_multiples():
    assert frame_shape(1920, 1080, 448, 28) == (336, 588)  # scale 448 / 1440
    assert frame_shape(96, 64, 448, 28) == (56, 84)  # never enlarged: 64 -> 56, 96 -> 84
    assert frame_shape(20, 10, 448, 28) == (28, 28)  # at least one multiple


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """2 s at 24 fps, 96 x 64: a bright 16-px square crossing from left to right (tests.media_files)."""
    path = tmp_path_factory.mktemp("mllm") / "square.mp4"
    write_video(path, fmt="mp4", vcodec="libx264", fps=24, seconds=2.0, size=(96, 64))
    return path


TINY = MllmPlannerConfig(model_id="tiny", fps=2.0, max_frames=4, frame_size=56, max_new_tokens=8, device="cpu")


def test_sample_frames_spreads_frames_over_the_whole_clip(clip):
    video = sample_frames(clip, TINY)
    np.testing.assert_allclose(video.times, [0.25, 0.75, 1.25, 1.75])
    assert video.duration == pytest.approx(2.0) and video.rate == pytest.approx(2.0)
    assert video.frames.shape == (4, 28, 56, 3) and video.frames.dtype == np.uint8
    # The square's left edge in source frame k is int(80 k / 47); frame k = 24 t shows at t; 56 / 96 scale.
    expected = [(int(80 * k / 47) + 8) * 56 / 96 for k in (6, 18, 30, 42)]
    weight = np.clip(video.frames.mean(axis=(1, 3)) - 60.0, 0.0, None)  # (F, W) square's share of each column
    centres = (weight * (np.arange(56) + 0.5)).sum(axis=1) / weight.sum(axis=1)
    np.testing.assert_allclose(centres, expected, atol=0.5)
    meta = video.metadata()
    assert meta["total_num_frames"] == 4 and meta["fps"] == pytest.approx(2.0)


def test_sample_frames_caps_the_count_and_turns_rotated_video(tmp_path):
    path = tmp_path / "turned.mp4"
    write_video(path, fmt="mp4", vcodec="libx264", fps=24, seconds=2.0, size=(96, 64), rotate=90)
    video = sample_frames(path, MllmPlannerConfig(fps=10.0, max_frames=6, frame_size=56))
    np.testing.assert_allclose(video.times, (np.arange(6) + 0.5) / 3)
    assert video.frames.shape == (6, 56, 28, 3)  # displayed 64 wide x 96 high, scaled by 56 / sqrt(64 * 96)
    # The square moves along the displayed height, the same way engine.video_io turns the picture.
    weights = lambda frames: np.clip(frames.mean(axis=(2, 3)) - 60.0, 0, None)  # (F, H) square's share of rows
    rows = lambda frames: (weights(frames) * np.arange(frames.shape[1])).sum(1) / weights(frames).sum(1)
    reference = load_video(path, rate=3.0, size=48).frames  # (6, 48, 48, 3), frame k shows k / 3 s
    assert np.sign(np.diff(rows(video.frames))).tolist() == np.sign(np.diff(rows(reference))).tolist() != [0] * 5
    with pytest.raises(UserInputError, match="not found"):
        sample_frames(tmp_path / "missing.mp4", TINY)


# ----------------------------------------------------------------------------------------------- inputs


@pytest.fixture(scope="module")
def tokenizer():
    """A byte-level tokenizer (every byte one token, so text round-trips exactly) with Qwen's special tokens;
    id 0 is "z", so a model whose logits are all zero answers "zzzz..." under greedy decoding."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    alphabet.remove("z")
    tok = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(["z", *alphabet])}, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(SPECIAL)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", clean_up_tokenization_spaces=False
    )


def test_patches_match_transformers_image_processor_on_a_still(tokenizer):
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    still = np.random.default_rng(0).integers(0, 256, (56, 84, 3), dtype=np.uint8)
    patches, grid = QwenFramesProcessor(tokenizer).patchify(np.stack([still, still]))
    reference = Qwen2VLImageProcessorPil()(images=[still], return_tensors="np")  # a still is two equal frames
    assert grid == (1, 4, 6) and tuple(reference["image_grid_thw"][0]) == grid
    np.testing.assert_allclose(patches, reference["pixel_values"], atol=1e-5)


def test_processor_expands_the_video_placeholder(tokenizer):
    processor = QwenFramesProcessor(tokenizer)
    frames = np.zeros((3, 28, 56, 3), np.uint8)  # 3 frames: the last repeats to fill 2 temporal patches
    prompt = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "hi"}]}]
    )
    assert (
        prompt == "<|im_start|>user\n<|vision_start|><|video_pad|><|vision_end|>hi<|im_end|>\n<|im_start|>assistant\n"
    )
    inputs = processor(text=[prompt], videos=[frames], video_metadata=[{"fps": 1.5}])
    video_id = tokenizer.convert_tokens_to_ids("<|video_pad|>")
    assert inputs["video_grid_thw"].tolist() == [[2, 2, 4]]
    assert inputs["pixel_values_videos"].shape == (16, 3 * 2 * 14 * 14)
    assert (inputs["input_ids"] == video_id).sum() == 4  # 2 * 2 * 4 patches, 2 x 2 merged into one token
    assert torch.equal(inputs["mm_token_type_ids"], 2 * (inputs["input_ids"] == video_id).long())
    assert inputs["second_per_grid_ts"].tolist() == pytest.approx([2 / 1.5])
    black = inputs["pixel_values_videos"][0].reshape(3, 2 * 14 * 14)  # (C, tp * p * p) of a black patch
    np.testing.assert_allclose(black[:, 0], -np.array(CLIP_MEAN) / np.array(CLIP_STD), rtol=1e-6)


@pytest.mark.skipif(not HAS_TORCHVISION, reason="transformers' Qwen2-VL video processor needs torchvision")
def test_processor_matches_transformers_qwen_processor(tokenizer):
    from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    ours = QwenFramesProcessor(tokenizer)
    theirs = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(),
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(min_pixels=28 * 28, max_pixels=56 * 84),
        chat_template=ours.chat_template,
    )
    video = SampledVideo(np.random.default_rng(1).integers(0, 256, (5, 56, 84, 3), dtype=np.uint8), np.zeros(5), 2.5)
    prompt = ours.apply_chat_template([{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "a"}]}])
    kw = {"text": [prompt], "videos": [video.frames], "video_metadata": [video.metadata()], "do_sample_frames": False}
    a, b = ours(**kw, return_tensors="pt"), theirs(**kw, return_tensors="pt")
    for key in ("input_ids", "attention_mask", "mm_token_type_ids", "video_grid_thw"):
        assert torch.equal(a[key], b[key]), key
    torch.testing.assert_close(a["pixel_values_videos"], b["pixel_values_videos"], atol=1e-5, rtol=0)
    torch.testing.assert_close(a["second_per_grid_ts"].double(), torch.as_tensor(b["second_per_grid_ts"]).double())


# ----------------------------------------------------------------------------------------------- planner


class StubModel:
    """A stand-in for a video-text model: answers the given texts in turn and records every call."""

    device = torch.device("cpu")

    def __init__(self, tokenizer, answers: list[str]):
        self.tokenizer, self.answers, self.calls = tokenizer, list(answers), []

    def generate(self, **kwargs):
        self.calls.append(kwargs)
        answer = self.tokenizer(self.answers.pop(0), add_special_tokens=False)["input_ids"]
        return torch.cat([kwargs["input_ids"], torch.tensor([answer + [self.tokenizer.eos_token_id]])], dim=1)


def prompt_of(call: dict, tokenizer) -> str:
    return tokenizer.decode(call["input_ids"][0])


MALFORMED = (
    "Sure! Here are the blocks.\n```json\n{'Semantic': 'Boots on wet concrete, a heavy stride',"
    " 'temporal_cot': ['step at 0.4 s', 'step at 0.9 s', 'step at 1.4 s'],\n 'Spatial block': 'centre, moving right',"
)


def test_plan_parses_a_malformed_answer_in_one_call(clip, tokenizer):
    model = StubModel(tokenizer, [MALFORMED])
    planner = MllmPlanner(model, QwenFramesProcessor(tokenizer), TINY)
    seen = []
    with pytest.warns(UserWarning, match="aesthetic"):
        got = planner.plan(clip, progress=lambda f, m: seen.append(f))
    assert got == cot(
        "Boots on wet concrete, a heavy stride",
        "step at 0.4 s; step at 0.9 s; step at 1.4 s",
        "",
        "centre, moving right",
    )
    assert len(model.calls) == 1  # parsed: no split step
    call = model.calls[0]
    assert call["video_grid_thw"].tolist() == [[2, 2, 4]] and call["pixel_values_videos"].shape == (16, 1176)
    assert call["do_sample"] is False and call["max_new_tokens"] == 8 and call["temperature"] is None
    prompt = prompt_of(call, tokenizer)
    assert (
        "lasts 2.00 seconds" in prompt and "You see 4 frames" in prompt and "0.25, 0.75, 1.25, 1.75 seconds" in prompt
    )
    assert '"semantic", "temporal", "aesthetic", "spatial", "negative"' in prompt
    assert seen[0] == 0.0 and seen[-1] == 1.0 and seen == sorted(seen)


PROSE = "Heavy boots thud on wet concrete at 0.4 and 0.9 s, in a dry small room, left of centre."
SPLIT = (
    '{"semantic": "heavy boots on wet concrete", "temporal": "steps at 0.4 and 0.9 s",'
    ' "aesthetic": "dry small room", "spatial": "left of centre"}'
)


def test_split_step_runs_only_when_the_first_answer_has_no_blocks(clip, tokenizer):
    processor = QwenFramesProcessor(tokenizer)
    direct = StubModel(tokenizer, [SPLIT])
    assert MllmPlanner(direct, processor, TINY).plan(clip) == parse_answer(SPLIT)
    assert len(direct.calls) == 1

    split = StubModel(tokenizer, [PROSE, SPLIT])
    got = MllmPlanner(split, processor, TINY).plan(clip)
    assert got == cot("heavy boots on wet concrete", "steps at 0.4 and 0.9 s", "dry small room", "left of centre")
    first, second = split.calls
    assert "pixel_values_videos" in first and "pixel_values_videos" not in second  # the second is text only
    second_prompt = prompt_of(second, tokenizer)
    assert PROSE in second_prompt and "2.00-second video clip" in second_prompt and "<|video_pad|>" not in second_prompt

    off = StubModel(tokenizer, [PROSE])
    no_split = dataclasses.replace(TINY, split_step=False)
    with pytest.warns(UserWarning, match="semantic block"):
        assert MllmPlanner(off, processor, no_split).plan(clip) == cot(PROSE)
    assert len(off.calls) == 1


def test_both_steps_failing_falls_back_or_says_no_answer(clip, tokenizer):
    processor = QwenFramesProcessor(tokenizer)
    failing = StubModel(tokenizer, [PROSE, "I cannot split this."])
    with pytest.warns(UserWarning, match="semantic block"):
        assert MllmPlanner(failing, processor, TINY).plan(clip) == cot(PROSE)
    assert len(failing.calls) == 2

    silent = StubModel(tokenizer, ["  "])
    with pytest.raises(UserInputError, match="no usable answer"):
        MllmPlanner(silent, processor, TINY).plan(clip)
    assert len(silent.calls) == 1  # nothing to split


def test_prompts_name_the_four_dimensions():
    video = SampledVideo(np.zeros((2, 28, 28, 3), np.uint8), np.array([0.5, 1.5]), 2.0)
    first = describe_prompt(video, MllmPlannerConfig(ask_negative=False))
    second = split_prompt("a dog barks", 2.0, MllmPlannerConfig())
    for text in (first, second):
        for word in ("semantic", "temporal", "aesthetic", "spatial", "material", "onsets", "reverberation", "left"):
            assert word in text
    assert '"negative"' not in first and '"negative"' in second and "0.50, 1.50 seconds" in first


# ----------------------------------------------------------------------------------------------- tiny Qwen2.5-VL


@pytest.fixture(scope="module")
def tiny_qwen(tokenizer):
    """A randomly initialised Qwen2.5-VL with a 1-layer, width-32 text model and vision tower. Its output
    projection is zeroed so greedy decoding is deterministic ("zzzz...": token 0) whatever the weights."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL}
    text = dict(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=4096,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
        bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"],
    )  # fmt: skip
    vision = dict(
        depth=1, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=32, window_size=56,
        fullatt_block_indexes=[0], tokens_per_second=2,
    )  # fmt: skip
    config = Qwen2_5_VLConfig(
        text_config=text, vision_config=vision, image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"], vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )  # fmt: skip
    torch.manual_seed(0)
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    with torch.no_grad():
        model.lm_head.weight.zero_()
    return model


def test_plan_with_a_tiny_qwen_model(clip, tokenizer, tiny_qwen, one_thread):
    planner = MllmPlanner(tiny_qwen, QwenFramesProcessor(tokenizer), TINY)
    calls, generate = [], tiny_qwen.generate

    def spy(**kwargs):
        calls.append(kwargs)
        return generate(**kwargs)

    merged = []  # the vision tower's merged tokens, (tokens, 32) per call: the frames did go through it
    hook = tiny_qwen.model.visual.merger.register_forward_hook(lambda m, i, out: merged.append(tuple(out.shape)))
    tiny_qwen.generate = spy
    try:
        with pytest.warns(UserWarning, match="semantic block"):
            got = planner.plan(clip)
    finally:
        del tiny_qwen.generate
        hook.remove()
    assert got == cot("z" * 8)  # garbage: no blocks in either answer, so the first answer is the semantic block
    assert len(calls) == 2
    prompt = prompt_of(calls[0], tokenizer)
    assert "lasts 2.00 seconds" in prompt and "You see 4 frames" in prompt
    assert prompt.count("<|video_pad|>") == 4 and calls[0]["video_grid_thw"].tolist() == [[2, 2, 4]]
    assert calls[0]["second_per_grid_ts"].tolist() == [1.0]  # 2 frames per temporal patch at 2 frames/s
    assert merged == [(4, 32)]  # once, for the first question (the split step is text only)


def test_from_config_loads_a_local_folder_offline(clip, tokenizer, tiny_qwen, tmp_path, one_thread):
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    tiny_qwen.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    Qwen2VLImageProcessorPil(image_mean=[0.5] * 3, image_std=[0.5] * 3).save_pretrained(tmp_path)
    cfg = dataclasses.replace(TINY, model_id=str(tmp_path), local_files_only=True)
    planner = MllmPlanner.from_config(cfg)
    if not HAS_TORCHVISION:
        assert isinstance(planner.processor, QwenFramesProcessor)
        assert planner.processor.image_mean.tolist() == [0.5] * 3  # settings come from the checkpoint
    assert planner.model.device.type == "cpu" and planner.model.dtype == torch.float32
    with pytest.warns(UserWarning, match="semantic block"):
        assert planner.plan(clip) == cot("z" * 8)

    with pytest.raises(UserInputError, match="cannot load the planner model") as info:
        MllmPlanner.from_config(MllmPlannerConfig(model_id=str(tmp_path / "missing"), local_files_only=True))
    assert "\n" not in str(info.value)


def test_sampling_is_seeded_and_leaves_the_callers_random_state(tokenizer, tiny_qwen, one_thread):
    planner = MllmPlanner(tiny_qwen, QwenFramesProcessor(tokenizer), dataclasses.replace(TINY, temperature=1.0))
    state = torch.random.get_rng_state()
    answers = [planner.ask("hello", seed=seed) for seed in (3, 3, 4)]
    assert torch.equal(torch.random.get_rng_state(), state)
    assert answers[0] == answers[1] != answers[2]  # all-zero logits: every token equally likely
    assert len(answers[0]) >= 4
