"""The Temporal block's times on the latent time axis: what the decomposed CoT can give that one joined
string cannot.

The Temporal block says *when* things sound ("9 chirps, at 0.3, 0.9, 2.6 s; 5 clangs at 1.3, 3.0 s",
"a knock every 0.50 s from 1.2 s to 6.0 s", "loudest around 4.0 s"). Through cross-attention the
generator only sees those numbers as words; here they are read into a per-frame track at the codec's latent
rate, so a written time lands on its frame, and a designer who edits "2.6" to "3.1" moves that sound.
Only a decomposed CoT says which text is the Temporal block; a monolithic string has no such block, and a
model without a CoT no text at all, so only decomposed models take a timeline.

Channels of the track (`TIMELINE_DIM` = 6), each a Gaussian bump of ``SIGMA_FRAMES`` frames at every time:

- 0..3: onsets named by clause g of the block (clauses are cut at ";" and at sentence ends, in the order
  written, so clause g is usually the g-th source of the Semantic block); clauses after the fourth share
  channel 3. An onset is a time after "at" (one time or a comma list: "at 0.3, 0.9, 2.6 s"), or a regular
  series ("every P s from A to B", "about P s apart, A to B"), expanded to each of its hits;
- 4: other times ("loudest around 4.0 s", "gone by 7.5 s"): where a continuous sound peaks or changes;
- 5: 1 on every frame when the block names any time (the track is then to be trusted), else 0.

A clause that only restates the first event ("The first event is the chirp at 0.3 s", "It opens with
...") is skipped: the time is already among the onsets. Numbers that are not times (a count, "12 more")
are not read: a time is a number followed by "s", "sec" or "seconds", or a list of numbers ending in one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

TIMELINE_DIM = 6  # onset channels of clauses 0..3, other times, "the block names times"
ONSET_CHANNELS = 4
SIGMA_FRAMES = 1.0  # width of each bump, latent frames (~46 ms at 21.5 frames/s)
MAX_HITS = 200  # at most this many times per series (a "every 0.01 s" typo cannot flood the track)

_NUM = r"\d+(?:\.\d+)?"
_UNIT = r"\s*(?:s|secs?|seconds?)\b"
_TIME = rf"(?:about |around |roughly |approximately |~)?({_NUM}){_UNIT}"
_LIST = re.compile(rf"\bat (?:about |around |roughly |approximately |~)?((?:{_NUM}\s*,\s*)*{_NUM}){_UNIT}", re.I)
_EVERY = re.compile(rf"\bevery ({_NUM}){_UNIT}", re.I)
_APART = re.compile(rf"\b(?:about |around )?({_NUM}){_UNIT} apart\b", re.I)
_ANY = re.compile(_TIME, re.I)
_SUMMARY = re.compile(r"\b(first event|opens with|starts with|begins with)\b", re.I)
_CLAUSE_CUT = re.compile(r";|(?<!\d)\.(?!\d)")  # a full stop that is not a decimal point


@dataclass
class TemporalTimes:
    """The times read from one Temporal block, in seconds."""

    onsets: list[list[float]] = field(default_factory=list)  # per clause with onsets, in writing order
    others: list[float] = field(default_factory=list)  # times that are not onsets

    @property
    def empty(self) -> bool:
        """True when the block names no time at all."""
        return not self.others and not any(self.onsets)


def _series(text: str, period: re.Match) -> list[float]:
    """The hits of a regular series in ``text`` whose period is the match ``period``: from the first
    to the second of the clause's other times."""
    p = float(period.group(1))
    times = [float(m.group(1)) for m in _ANY.finditer(text) if not period.start() <= m.start() < period.end()]
    if p <= 0 or len(times) < 2:
        return []
    a, b = times[0], times[1]
    n = min(int(np.floor((b - a) / p + 0.5)) + 1, MAX_HITS)
    return [round(a + k * p, 4) for k in range(max(n, 1))]


def read_temporal(text: str) -> TemporalTimes:
    """Read the onsets and other times of a Temporal block (see the module notes for the rules)."""
    out = TemporalTimes()
    for clause in _CLAUSE_CUT.split(text or ""):
        clause = clause.strip()
        if not clause or _SUMMARY.search(clause):
            continue
        onsets: list[float] = []
        spans: list[tuple[int, int]] = []
        period = _EVERY.search(clause) or _APART.search(clause)
        if period:
            onsets += _series(clause, period)
            spans.append((0, len(clause)))  # every time of the clause belongs to the series
        else:
            for m in _LIST.finditer(clause):
                onsets += [float(v) for v in re.findall(_NUM, m.group(1))][:MAX_HITS]
                spans.append(m.span())
        for m in _ANY.finditer(clause):
            if not any(a <= m.start() < b for a, b in spans):
                out.others.append(float(m.group(1)))
        if onsets:
            out.onsets.append(onsets)
    return out


def timeline_track(temporal: str, n_frames: int, rate: float, start: int = 0) -> np.ndarray:
    """The track (n_frames, TIMELINE_DIM) float32 of a Temporal block over latent frames [start, start +
    n_frames) at ``rate`` frames per second (a time t is frame t * rate, counted from the video's start, so a
    window of a longer video gets its own part; times outside the frames are left out)."""
    times = read_temporal(temporal)
    track = np.zeros((n_frames, TIMELINE_DIM), np.float32)
    if times.empty or n_frames < 1:
        return track
    frames = np.arange(start, start + n_frames, dtype=np.float64)[:, None]  # (T, 1)

    def bumps(ts: list[float]) -> np.ndarray:
        pos = np.asarray(ts, np.float64)[None] * rate  # (1, N) in frames
        inside = (pos > start - 3 * SIGMA_FRAMES) & (pos < start + n_frames - 1 + 3 * SIGMA_FRAMES)
        pos = pos[inside][None]
        if pos.size == 0:
            return np.zeros(n_frames)
        return np.exp(-0.5 * ((frames - pos) / SIGMA_FRAMES) ** 2).max(1)  # (T,): overlapping hits stay 1

    for g, ts in enumerate(times.onsets):
        ch = min(g, ONSET_CHANNELS - 1)
        track[:, ch] = np.maximum(track[:, ch], bumps(ts))
    track[:, ONSET_CHANNELS] = bumps(times.others)
    track[:, ONSET_CHANNELS + 1] = 1.0
    return track


def shift_temporal(text: str, seconds: float) -> str:
    """``text`` with every time it names moved by ``seconds`` (the times `read_temporal` reads and the
    closing summary's; a series' period stays as it is; a time that would fall before 0 becomes 0), written
    with the decimals it had. For measuring whether a render follows edited times."""
    out, pos = [], 0
    for m in _time_spans(text):
        out.append(text[pos : m[0]])
        value = float(text[m[0] : m[1]])
        digits = max(1, len(text[m[0] : m[1]].partition(".")[2]))
        out.append(f"{max(value + seconds, 0.0):.{digits}f}")
        pos = m[1]
    return "".join(out) + text[pos:]


def _time_spans(text: str) -> list[tuple[int, int]]:
    """Character spans of the times a block names (not a series' period), in order."""
    spans, start = [], 0
    for clause in _CLAUSE_CUT.split(text or ""):
        offset = text.index(clause, start)
        start = offset + len(clause)
        if not clause.strip():
            continue
        period = _EVERY.search(clause) or _APART.search(clause)
        for m in _ANY.finditer(clause):  # a summary's time too: it restates an onset
            if period and period.start() <= m.start() < period.end():
                continue
            spans.append((offset + m.start(1), offset + m.end(1)))
        if not period:
            for m in _LIST.finditer(clause):  # the numbers of a list before its last (which _ANY found)
                for n in re.finditer(_NUM, m.group(1)):
                    span = (offset + m.start(1) + n.start(), offset + m.start(1) + n.end())
                    if span not in spans:
                        spans.append(span)
    return sorted(spans)
