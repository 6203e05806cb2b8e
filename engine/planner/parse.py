"""Reading a CoT out of free text: what language models really write.

`parse_answer` accepts a JSON object anywhere in the text (in fences or prose, single quotes, trailing
commas, odd key names, truncated mid-value) or headed sections ("Semantic: ...", "**Temporal**", "1.
Spatial -"); `fallback_cot` keeps a whole unstructured answer editable in the semantic block. Every
result passes `engine.cot.validate_cot`, so the length limits apply.
"""

from __future__ import annotations

import json
import re
import warnings

from engine.cot import BLOCKS, Cot, validate_cot
from engine.errors import UserInputError

FIELDS: tuple[str, ...] = (*BLOCKS, "negative")


_WS = " \t\r\n"
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "", "f": "", "/": "/"}
_BARE_KEY = re.compile(r"[^:=,{}\[\]\n]*")
_BARE_VALUE = re.compile(r"[^,}\]\n]*")


def _skip(s: str, i: int, chars: str = _WS) -> int:
    while i < len(s) and s[i] in chars:
        i += 1
    return i


def _closes(s: str, j: int) -> bool:
    """Whether a quote just before ``j`` ends its string: what follows is a separator, a line end or the end
    (so apostrophes and stray quotes inside a value do not end it)."""
    j = _skip(s, j, " \t")
    return j >= len(s) or s[j] in ",:}]\r\n`"


def _loose_string(s: str, i: int, quote: str) -> tuple[str, int]:
    """A string opened by ``quote`` just before ``i``; an unterminated one keeps what is there."""
    out = []
    while i < len(s):
        c = s[i]
        if c == "\\" and i + 1 < len(s):
            code = s[i + 2 : i + 6]
            if s[i + 1] == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", code):
                out.append(chr(int(code, 16)))
                i += 6
            else:
                out.append(_ESCAPES.get(s[i + 1], s[i + 1]))
                i += 2
            continue
        if c == quote and _closes(s, i + 1):
            return "".join(out), i + 1
        out.append(c)
        i += 1
    return "".join(out), i


def _bare(token: str) -> object:
    """An unquoted value: JSON/Python literals and numbers become what they are, other text stays text."""
    literals = {"null": None, "none": None, "true": True, "false": False}
    if token.lower() in literals:
        return literals[token.lower()]
    try:
        return json.loads(token)
    except ValueError:
        return token


def _loose_value(s: str, i: int) -> tuple[object, int]:
    i = _skip(s, i)
    if i >= len(s):
        return None, i
    if s[i] == "{":
        return _loose_object(s, i + 1)
    if s[i] == "[":
        return _loose_array(s, i + 1)
    if s[i] in "\"'":
        return _loose_string(s, i + 1, s[i])
    m = _BARE_VALUE.match(s, i)
    return _bare(m.group().strip()), m.end()


def _loose_object(s: str, i: int) -> tuple[dict, int]:
    """A JSON-ish object opened just before ``i``: single quotes, bare keys, trailing commas, ``=``, and a
    missing end (a truncated answer) are all read; returns (object, index after it)."""
    obj: dict = {}
    while True:
        i = _skip(s, i, _WS + ",")
        if i >= len(s):
            return obj, i
        if s[i] in "}]":
            return obj, i + 1
        if s[i] in "\"'":
            key, j = _loose_string(s, i + 1, s[i])
        else:
            m = _BARE_KEY.match(s, i)
            key, j = m.group().strip(), m.end()
        j = _skip(s, j)
        if j < len(s) and s[j] in ":=":
            value, j = _loose_value(s, j + 1)
            obj.setdefault(key, value)
        i = max(j, i + 1)


def _loose_array(s: str, i: int) -> tuple[list, int]:
    items = []
    while True:
        i = _skip(s, i, _WS + ",")
        if i >= len(s):
            return items, i
        if s[i] in "]}":
            return items, i + 1
        value, j = _loose_value(s, i)
        items.append(value)
        i = max(j, i + 1)


def _json_objects(text: str):
    """Every top-level ``{...}`` in the text, strict JSON first, else read loosely (may be truncated)."""
    decoder = json.JSONDecoder()
    i = text.find("{")
    while i != -1:
        try:
            try:
                obj, end = decoder.raw_decode(text, i)
            except ValueError:
                obj, end = _loose_object(text, i + 1)
        except RecursionError:  # absurdly deep nesting is no answer
            return
        yield obj
        i = text.find("{", max(end, i + 1))


def _field_name(key: str) -> str | None:
    """The CoT field a key names: "Semantic", "semantic_cot", "Temporal block", "aesthetics" ...; None if none."""
    for word in re.findall(r"[a-z]+", key.lower()):
        for name in FIELDS:
            if word.startswith(name):
                return name
    return None


def _join(parts: list[tuple[str, bool]]) -> str:
    """Join (text, is_list_item) pieces: list items that end without punctuation are separated by "; "."""
    out = ""
    for text, item in parts:
        sep = "; " if item and out and out[-1] not in ".;:!?," else " "
        out = out + sep + text if out else text
    return out


def _as_text(value: object) -> str:
    """A block's text from any JSON value: lists joined, objects as "key: value", numbers as strings."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):
        items = [f"{k}: {t}" for k, v in value.items() if (t := _as_text(v))]
        return _join([(t, True) for t in items])
    if isinstance(value, (list, tuple)):
        return _join([(t, True) for v in value if (t := _as_text(v))])
    return str(value)


def _has_block(fields: dict[str, str] | None) -> bool:
    return bool(fields) and any(fields.get(b) for b in BLOCKS)


def _fields_in(obj: object, depth: int = 0) -> dict[str, str]:
    """The CoT fields of a decoded object, or of the first object nested in it that has block keys
    (answers like ``{"cot": {...}}``); unknown keys are dropped."""
    if isinstance(obj, dict):
        fields: dict[str, str] = {}
        for key, value in obj.items():
            name = _field_name(str(key))
            if name and not fields.get(name):
                fields[name] = _as_text(value)
        if any(b in fields for b in BLOCKS):
            return fields
        children = list(obj.values())
    elif isinstance(obj, list):
        children = obj
    else:
        return {}
    for child in children if depth < 4 else []:
        if found := _fields_in(child, depth + 1):
            return found
    return {}


def _fields_from_json(text: str) -> dict[str, str] | None:
    """Fields of the JSON object in the text that has block keys and the most non-empty blocks (an echoed
    empty template loses); None when no object has a block key."""
    best, best_count = None, -1
    for obj in _json_objects(text):
        fields = _fields_in(obj)
        count = sum(bool(fields.get(b)) for b in BLOCKS)
        if fields and count > best_count:
            best, best_count = fields, count
    return best


_NAME = r"(?P<name>semantic|temporal|aesthetic|spatial|negative)[a-z]*"
# A heading at the start of a line: "Semantic:", "**Temporal**:", "1. Semantic - ", "### Spatial",
# "- Aesthetic qualities:", "Temporal (when):"; a heading alone on its line has its text on the next lines.
_LINE_HEADING = re.compile(
    r"^[ \t>]*(?:#{1,6}[ \t]*)?(?:(?:\d{1,2}|[a-e])[.)][ \t]*|[-*+•][ \t]+)?[*_`\"'\[]*[ \t]*"
    + _NAME
    + r"(?:[ \t_-]+[a-z]+)?[ \t]*(?:\([^)\n]*\))?[ \t]*[*_`\"'\]]*[ \t]*(?:[:=]|[-–—](?=[ \t])|$)[ \t]*[*_`]*",
    re.IGNORECASE | re.MULTILINE,
)
# A heading inside a line ("... lamp. Temporal: at 1 s ..."): only a block name (+ block/cot) and a colon.
_INLINE_HEADING = re.compile(
    r"(?<![a-z])[*_`\"']*" + _NAME + r"(?:[ \t_-]*(?:block|cot|dimension))?[ \t]*[*_`\"']*[ \t]*:[ \t]*[*_`]*",
    re.IGNORECASE,
)
_BULLET = re.compile(r"^(?:[-*+•]|\d{1,2}[.)])[ \t]+")
_SECTION_END = re.compile(r"^[ \t]*(?:```|#)", re.MULTILINE)  # a code fence or another markdown heading


def _headings(text: str) -> list[tuple[int, int, str]]:
    """(start, end, field) of every block heading, in order, overlaps dropped."""
    found: dict[int, tuple[int, int, str]] = {}
    for pattern in (_LINE_HEADING, _INLINE_HEADING):
        for m in pattern.finditer(text):
            name = _field_name(m.group("name"))
            if name:
                found.setdefault(m.start("name"), (m.start(), m.end(), name))
    heads: list[tuple[int, int, str]] = []
    for head in sorted(found.values()):
        if not heads or head[0] >= heads[-1][1]:
            heads.append(head)
    return heads


def _clean_line(line: str) -> str:
    """One line of a section without emphasis marks, enclosing quotes or a trailing comma."""
    line = line.replace("**", "").replace("__", "").strip().strip("`").rstrip(",").strip()
    if len(line) >= 2 and line[0] == line[-1] and line[0] in "\"'":
        line = line[1:-1].strip()
    return line


def _clean_section(body: str) -> str:
    """A section's lines as one text: bullets become "; "-separated items, wrapped prose is rejoined."""
    parts = []
    for raw in body.splitlines():
        m = _BULLET.match(raw.strip())
        line = _clean_line(raw.strip()[m.end() :] if m else raw)
        if line:
            parts.append((line, bool(m)))
    return _join(parts)


def _fields_from_sections(text: str) -> dict[str, str] | None:
    """Fields from headed sections; each runs to the next heading, code fence or markdown heading."""
    heads = _headings(text)
    fields: dict[str, str] = {}
    for k, (_, end, name) in enumerate(heads):
        stop = heads[k + 1][0] if k + 1 < len(heads) else len(text)
        cut = _SECTION_END.search(text, end, stop)
        body = _clean_section(text[end : cut.start() if cut else stop])
        if body and not fields.get(name):
            fields[name] = body
    return fields if _has_block(fields) else None


def _strip_reasoning(text: str) -> str:
    """The answer without a reasoning model's ``<think>...</think>`` part."""
    text = re.sub(r"<think>.*?</think>", " ", text, flags=re.DOTALL)
    return text.rsplit("</think>", 1)[-1]


def parse_answer(text: str) -> Cot | None:
    """The four blocks from a model's answer, or None when it holds no block with text.

    Reads a JSON object anywhere in the text (in fences, amid prose, single quotes, trailing commas, any key
    case and names like "semantic_cot" or "Temporal block", truncated: what is there is kept) and, failing
    that, headed sections ("Semantic: ...", "**Temporal**: ...", "1. Semantic - ...", markdown headings).
    Unknown keys are dropped, lists joined, numbers written out; missing blocks are empty. The result goes
    through `validate_cot`, so over-long blocks are cut with a warning.
    """
    body = _strip_reasoning(text or "")
    fields = _fields_from_json(body)
    if fields is None:
        fields = _fields_from_sections(body)
    if not _has_block(fields):
        return None
    obj = {b: fields.get(b, "") for b in BLOCKS}
    if fields.get("negative"):
        obj["negative"] = fields["negative"]
    return validate_cot(obj)


def clean_answer(text: str) -> str:
    """An answer as plain one-line text: no reasoning part, code fences, emphasis or heading marks."""
    text = re.sub(r"```[A-Za-z]*", " ", _strip_reasoning(text or ""))
    text = re.sub(r"^[ \t]*#{1,6}[ \t]*", "", text.replace("**", "").replace("__", ""), flags=re.MULTILINE)
    return " ".join(text.split())


def fallback_cot(text: str) -> Cot:
    """Last resort: the whole cleaned answer as the semantic block (the user edits it), with a warning.

    Raises `UserInputError` when the answer is empty.
    """
    body = clean_answer(text)
    if not body:
        raise UserInputError("the planner model gave no usable answer; plan again or write the four blocks yourself")
    warnings.warn("the planner's answer had no separate blocks; all of it is in the semantic block", stacklevel=2)
    return validate_cot({"semantic": body, "temporal": "", "aesthetic": "", "spatial": ""})
