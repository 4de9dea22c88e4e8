"""Check a fine-tuning file in one pass and list every defect, each with its line and a fix.

In the spirit of OpenAI's data-prep cookbook and the old ``openai tools fine_tunes.prepare_data``.
Nothing in the file is changed, and bad input never raises: a missing file, a folder, bad bytes or
broken JSON all become findings in the one :class:`Report`.

>>> report = validate_chat_file("train.jsonl", valid_path="valid.jsonl")
>>> print(report)          # a summary line, then "file:line: [code] message -- fix: ..." per finding
>>> report.to_frame()      # the same findings as a pandas DataFrame

The table :data:`CHECKS` lists every code with its severity and the usual fix.
"""
from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

CHAT_KEYS = {"messages", "tools", "functions", "parallel_tool_calls"}
MESSAGE_KEYS = {"role", "content", "name", "weight", "tool_calls", "function_call", "tool_call_id", "refusal"}
ROLES = {"system", "developer", "user", "assistant", "tool", "function"}
LEGACY_KEYS = {"prompt", "completion"}

# code -> (severity, how to fix it). One row per check the validator makes.
CHECKS = {
    "unreadable_file": ("error", "check the path: it must name a readable file, not a folder"),
    "empty_file": ("error", "write one JSON object per line into the file"),
    "not_jsonl": ("error", "write one object per line: f.write(json.dumps(example, ensure_ascii=False) + '\\n')"),
    "bad_encoding": ("error", "save the file as UTF-8: open(path, 'w', encoding='utf-8')"),
    "blank_line": ("warning", "delete the empty line"),
    "not_json": ("error", "write each line with json.dumps(example); look for a missing quote, comma or bracket"),
    "not_object": ("error", "each line (and each message) must be a JSON object {...}"),
    "unknown_key": ("error", "remove the key or fix its spelling"),
    "missing_messages": ("error", 'put the conversation in a list: {"messages": [{"role": "user", "content": ...}]}'),
    "messages_not_list": ("error", '"messages" must be a list of {"role": ..., "content": ...} objects'),
    "empty_messages": ("error", "add a user message and the assistant reply, or delete the example"),
    "unknown_role": ("error", "use one of the roles " + ", ".join(sorted(ROLES))),
    "missing_content": ("error", 'give the message a "content" string (only assistant tool calls may leave it out)'),
    "empty_content": ("error", "write the text of the message, or delete the message"),
    "bad_content_type": ("error", '"content" must be a string (or a list of content parts)'),
    "bad_weight": ("error", 'use "weight": 0 (do not learn this reply) or 1 (learn it), on assistant messages only'),
    "no_assistant": ("error", "add the assistant reply that the model should learn"),
    "too_many_tokens": ("error", "shorten the example, or split the conversation into several examples"),
    "tokens_not_counted": ("warning", "pass count_tokens=..., or run helpers.tokens.install_offline_encodings()"),
    "missing_prompt": ("error", 'give every example a "prompt" string'),
    "missing_completion": ("error", 'give every example a non-empty "completion" string'),
    "separator_in_prompt": ("error", "the separator may only end the prompt: remove it from the prompt's text"),
    "missing_separator": ("error", "end every prompt with the same separator"),
    "no_leading_space": ("error", "start every completion with a space: ' ' + completion"),
    "missing_stop": ("error", "end every completion with the same stop sequence"),
    "exact_duplicate": ("warning", "delete the copy: duplicates over-weight one example"),
    "near_duplicate": ("warning", "keep one of the two, or make them really different (and their answers agree)"),
    "train_valid_overlap": ("error", "remove the example from the validation file: it makes validation look too good"),
    "too_few_examples": ("error", "OpenAI needs at least 10 examples; 50 to 100 good ones usually help clearly"),
    "label_imbalance": ("warning", "collect more examples of the rare labels, or down-sample the common ones"),
}


@dataclass
class Finding:
    """One defect: where it is (``line`` is 1-based, None for the whole file), what it is, how to fix it."""
    file: str
    line: int | None
    code: str
    severity: str  # "error" or "warning"
    message: str
    fix: str

    def __str__(self) -> str:
        return f"{self.file}{'' if self.line is None else f':{self.line}'}: [{self.code}] {self.message} -- fix: {self.fix}"


@dataclass
class Report:
    """Every finding for a training file (and its validation file, if one was given)."""
    file: str
    n_examples: int
    findings: list[Finding] = field(default_factory=list)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    @property
    def ok(self) -> bool:
        """True when nothing blocks training (warnings are allowed)."""
        return not self.errors

    def summary(self) -> dict[str, int]:
        """How often each code was found."""
        return dict(Counter(f.code for f in self.findings))

    def to_frame(self):
        """The findings as a pandas DataFrame (columns file, line, severity, code, message, fix)."""
        import pandas as pd

        columns = ["file", "line", "severity", "code", "message", "fix"]
        frame = pd.DataFrame([asdict(f) for f in self.findings], columns=columns)
        frame["line"] = frame["line"].astype("Int64")
        return frame

    def __str__(self) -> str:
        verdict = "OK" if self.ok else "NOT READY"
        head = (f"{self.file}: {_plural(self.n_examples, 'example')}, {_plural(len(self.errors), 'error')}, "
                f"{_plural(len(self.warnings), 'warning')} -- {verdict}")
        rows = [str(f) for f in self.findings]
        return "\n".join([head, *rows])


class _Findings(list):
    """The findings for one file, with :meth:`add` filling in severity and fix from :data:`CHECKS`."""

    def __init__(self, file: str):
        super().__init__()
        self.file = file

    def add(self, code: str, line: int | None, message: str, fix: str | None = None) -> None:
        severity, usual_fix = CHECKS[code]
        self.append(Finding(self.file, line, code, severity, message, fix or usual_fix))


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def _kind(value) -> str:
    """The JSON name of a parsed value's type, for messages."""
    names = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _read_jsonl(path, out: _Findings) -> list[tuple[int, dict]]:
    """Parse a JSONL file into (line number, object) pairs; every unreadable line becomes a finding."""
    try:
        data = Path(path).read_bytes()
    except (OSError, TypeError, ValueError) as exc:  # missing, a folder, no permission, not a path
        reason = "it is a folder" if isinstance(exc, IsADirectoryError) or Path(str(path)).is_dir() else (
            "it does not exist" if isinstance(exc, FileNotFoundError) else str(exc))
        out.add("unreadable_file", None, f"cannot read {path}: {reason}")
        return []
    if not data.strip():
        out.add("empty_file", None, "the file is empty")
        return []
    lines = data.split(b"\n")
    if lines[-1] == b"":  # the newline that ends the last line
        lines.pop()
    examples = []
    for number, raw in enumerate(lines, 1):
        if number == 1 and raw.startswith(b"\xef\xbb\xbf"):  # Windows editors like to start files with a BOM
            out.add("bad_encoding", 1, "the file starts with a byte-order mark (BOM)",
                    "save the file as UTF-8 without a BOM: encoding='utf-8', not 'utf-8-sig'")
            raw = raw[3:]
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            out.add("bad_encoding", number, f"byte {exc.start + 1} of the line ({raw[exc.start:exc.start + 1]!r}) "
                                            "is not UTF-8")
            continue
        if not text.strip():
            out.add("blank_line", number, "the line is empty")
            continue
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            out.add("not_json", number, f"invalid JSON at column {exc.colno}: {exc.msg}")
            continue
        except RecursionError:
            out.add("not_json", number, "the JSON is nested too deeply to read")
            continue
        if isinstance(value, dict):
            examples.append((number, value))
        else:
            out.add("not_object", number, f"the line is a JSON {_kind(value)}, not an object")
    if not examples and len(lines) > 1:  # maybe one pretty-printed JSON document instead of JSONL
        try:
            whole = json.loads(data.decode("utf-8"))
        except (ValueError, RecursionError):
            return examples
        out.clear()
        out.add("not_jsonl", None, f"the file is one JSON {_kind(whole)} spread over {len(lines)} lines, "
                                   "not one JSON object per line")
    return examples


def _text(content) -> str:
    """The text of a message's content: a string, or the text parts of a list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def _normalise(text: str) -> str:
    """Lower case, words only: 'Where is the remote?' and 'where is the remote' compare equal."""
    return " ".join(re.findall(r"\w+", text.lower()))


def _short_label(text) -> str | None:
    """A class label is a reply of at most two words; longer text is no label."""
    return text.strip() if isinstance(text, str) and 0 < len(text.split()) <= 2 else None


def _messages(example: dict) -> list[dict]:
    """The well-formed messages of a chat example (none if "messages" is not a list)."""
    messages = example.get("messages")
    return [m for m in messages if isinstance(m, dict)] if isinstance(messages, list) else []


def _chat_input(example: dict) -> str:
    """What the user sees and asks: the text of the user messages."""
    return " ".join(_text(m.get("content")) for m in _messages(example) if m.get("role") == "user")


def _chat_label(example: dict) -> str | None:
    """The last assistant reply, when it is a label of one or two words."""
    replies = [m.get("content") for m in _messages(example) if m.get("role") == "assistant"]
    return _short_label(replies[-1]) if replies else None


def _check_chat(line: int, example: dict, out: _Findings, count_tokens, max_tokens: int) -> None:
    n_found = len(out)
    for key in sorted(example.keys() - CHAT_KEYS):
        out.add("unknown_key", line, f"unknown key {key!r} in the example")
    messages = example.get("messages")
    if "messages" not in example:
        hint = " (it looks like a legacy prompt/completion example)" if "prompt" in example else ""
        out.add("missing_messages", line, f'the example has no "messages"{hint}')
        return
    if not isinstance(messages, list):
        out.add("messages_not_list", line, f'"messages" is a JSON {_kind(messages)}, not a list')
        return
    if not messages:
        out.add("empty_messages", line, '"messages" is an empty list')
        return
    for i, m in enumerate(messages, 1):
        if not isinstance(m, dict):
            out.add("not_object", line, f"message {i} is a JSON {_kind(m)}, not an object")
            continue
        for key in sorted(m.keys() - MESSAGE_KEYS):
            out.add("unknown_key", line, f"unknown key {key!r} in message {i}")
        role = m.get("role")
        if not isinstance(role, str) or role not in ROLES:
            out.add("unknown_role", line, f"message {i} has " + (f"role {role!r}" if "role" in m else "no role"))
        tool_call = role == "assistant" and bool(m.get("tool_calls") or m.get("function_call"))
        content = m.get("content")
        if content is None and not tool_call:
            out.add("missing_content", line, f"message {i} ({role}) has " + (
                "null content" if "content" in m else 'no "content"'))
        elif isinstance(content, (str, list)) and not _text(content).strip() and not tool_call:
            out.add("empty_content", line, f"message {i} ({role}) has empty content")
        elif content is not None and not isinstance(content, (str, list)):
            out.add("bad_content_type", line, f"message {i} has content of type {_kind(content)}")
        if "weight" in m and role != "assistant":
            out.add("bad_weight", line, f"message {i} ({role}) has a weight; only assistant messages may")
        elif "weight" in m and (isinstance(m["weight"], bool) or m["weight"] not in (0, 1)):
            out.add("bad_weight", line, f"message {i} has weight {m['weight']!r}; it must be 0 or 1")
    if not any(isinstance(m, dict) and m.get("role") == "assistant" for m in messages):
        out.add("no_assistant", line, "the example has no assistant message to learn from")
    if len(out) > n_found:  # count the tokens of well-formed examples only
        return
    try:
        n = count_tokens(messages)
    except Exception as exc:  # noqa: BLE001 -- e.g. no offline encodings: say so once, never crash
        if "tokens_not_counted" not in {f.code for f in out}:
            out.add("tokens_not_counted", line, f"tokens could not be counted from this line on: {exc!r}")
        return
    if n > max_tokens:
        out.add("too_many_tokens", line, f"the example has {n:,} tokens; the limit is {max_tokens:,}")


def _check_legacy(line: int, example: dict, out: _Findings, separator: str, stop: str) -> None:
    for key in sorted(example.keys() - LEGACY_KEYS):
        out.add("unknown_key", line, f"unknown key {key!r} in the example")
    prompt, completion = example.get("prompt"), example.get("completion")
    if not isinstance(prompt, str):
        hint = " (it looks like a chat example)" if "messages" in example else ""
        out.add("missing_prompt", line, ('no "prompt"' if "prompt" not in example
                                         else f'"prompt" is a JSON {_kind(prompt)}, not a string') + hint)
    elif separator:
        ends = prompt.endswith(separator)
        body = prompt[:-len(separator)] if ends else prompt
        if not ends:
            out.add("missing_separator", line, f"the prompt does not end with the separator {separator!r}",
                    f"end every prompt with {separator!r}")
        if separator in body:
            out.add("separator_in_prompt", line, f"the separator {separator!r} appears inside the prompt "
                                                 f"at character {body.index(separator) + 1}")
    if not isinstance(completion, str) or not completion.strip():
        out.add("missing_completion", line, 'no "completion"' if "completion" not in example
                else f'"completion" is empty or a JSON {_kind(completion)}')
        return
    if not completion[0].isspace():
        out.add("no_leading_space", line, f"the completion starts with {completion[:12]!r}, not a space")
    if stop and not completion.endswith(stop):
        out.add("missing_stop", line, f"the completion does not end with the stop sequence {stop!r}",
                f"end every completion with {stop!r}")


def _similar(queries, choices, threshold: float, earlier_only: bool):
    """Yield (query line, choice line, score) for each query's most similar choice at >= threshold.

    ``queries`` and ``choices`` are lists of (line, normalised text). rapidfuzz compares all pairs in
    C, in blocks of rows so that memory stays small; 2,000 examples take well under a second.
    """
    import numpy as np
    from rapidfuzz import fuzz, process

    queries, choices = [q for q in queries if q[1]], [c for c in choices if c[1]]
    if not queries or not choices:
        return
    texts, lines = [t for _, t in choices], np.array([n for n, _ in choices])
    step = max(1, 4_000_000 // len(texts))
    for start in range(0, len(queries), step):
        block = queries[start:start + step]
        scores = process.cdist([t for _, t in block], texts, scorer=fuzz.ratio,
                               score_cutoff=threshold * 100, workers=-1)
        for (line, _), row in zip(block, scores, strict=True):
            if earlier_only:
                row = np.where(lines < line, row, 0)
            best = int(np.argmax(row))  # the first (earliest) of the best matches
            if row[best] > 0:
                yield line, int(lines[best]), float(row[best])


def _check_file_level(examples, out, *, input_of, label_of, min_examples, threshold, imbalance_ratio):
    """The checks that look at all examples at once: count, duplicates, label balance."""
    if len(examples) < min_examples and not any(f.line is None for f in out):
        out.add("too_few_examples", None, f"the file has {_plural(len(examples), 'usable example')}; "
                                          f"at least {min_examples} are needed")
    seen, copies = {}, set()
    for line, example in examples:
        key = json.dumps(example, sort_keys=True, ensure_ascii=False)
        if key in seen:
            out.add("exact_duplicate", line, f"the example is identical to line {seen[key]}")
            copies.add(line)
        seen.setdefault(key, line)
    inputs = [(line, _normalise(input_of(example))) for line, example in examples]
    for line, other, score in _similar(inputs, inputs, threshold, earlier_only=True):
        if line not in copies:
            out.add("near_duplicate", line, f"the input is {score:.0f}% similar to line {other}")
    counts = Counter(label for label in map(label_of, (e for _, e in examples)) if label is not None)
    if len(counts) >= 2:
        (big, n_big), (small, n_small) = counts.most_common()[0], counts.most_common()[-1]
        if n_big > imbalance_ratio * n_small:
            listing = ", ".join(f"{label!r}: {n}" for label, n in counts.most_common(12))
            out.add("label_imbalance", None, f"label {big!r} has {n_big} examples, more than {imbalance_ratio:g} x "
                                             f"the {n_small} of {small!r} (counts: {listing})")
    return inputs


def _by_line(finding: Finding) -> tuple:
    """Sort key: file-level findings first, then by line."""
    return finding.line is not None, finding.line or 0


def _validate(path, check, *, input_of, label_of, valid_path, **file_level) -> Report:
    out = _Findings(str(path))
    examples = _read_jsonl(path, out)
    for line, example in examples:
        check(line, example, out)
    inputs = _check_file_level(examples, out, input_of=input_of, label_of=label_of, **file_level)
    findings = sorted(out, key=_by_line)
    if valid_path is not None:  # the validation file: the same per-line checks, plus overlap with train
        vout = _Findings(str(valid_path))
        valid = _read_jsonl(valid_path, vout)
        for line, example in valid:
            check(line, example, vout)
        valid_inputs = [(line, _normalise(input_of(example))) for line, example in valid]
        for line, train_line, score in _similar(valid_inputs, inputs, file_level["threshold"], earlier_only=False):
            how = "identical to" if score >= 100 else f"{score:.0f}% similar to"
            vout.add("train_valid_overlap", line, f"the input is {how} training line {train_line} of {path}")
        findings += sorted(vout, key=_by_line)
    return Report(str(path), len(examples), findings)


def check_examples(examples: list, source: str = "examples") -> list[Finding]:
    """The errors that make examples untrainable, one :class:`Finding` each, before any tokenizer sees them.

    Each example is checked on its own as a chat example, or as a legacy ``{"prompt", "completion"}`` record
    (its separator and stop-sequence conventions are not required here). ``line`` is the example's position,
    from 1, as in a JSONL file. Token limits and file-level checks stay with :func:`validate_chat_file`."""
    out = _Findings(source)
    for line, example in enumerate(examples, 1):
        if not isinstance(example, dict):
            out.add("not_object", line, f"the example is a {_kind(example)}, not an object")
        elif "messages" in example or "prompt" not in example:
            _check_chat(line, example, out, lambda messages: 0, max_tokens=1)
        else:
            _check_legacy(line, example, out, separator="", stop="")
            out[:] = [f for f in out if f.code != "no_leading_space"]
    return [f for f in out if f.severity == "error"]


def validate_chat_file(path, *, valid_path=None, count_tokens: Callable[[list], int] | None = None,
                       max_tokens: int = 16_385, min_examples: int = 10, near_duplicate_threshold: float = 0.95,
                       label_of: Callable[[dict], str | None] | None = None, imbalance_ratio: float = 3.0) -> Report:
    """Validate a chat-format JSONL file (``{"messages": [...]}`` per line) and its optional validation file.

    ``count_tokens(messages) -> int`` defaults to :func:`helpers.tokens.count_chat_tokens`. ``label_of(example)``
    gives an example's class for the balance check; by default the last assistant reply if it is one or two
    words (a classifier's label), else None, which leaves the example out of the check.
    """
    if count_tokens is None:
        from helpers.tokens import count_chat_tokens as count_tokens
    return _validate(path, lambda line, ex, out: _check_chat(line, ex, out, count_tokens, max_tokens),
                     input_of=_chat_input, label_of=label_of or _chat_label, valid_path=valid_path,
                     min_examples=min_examples, threshold=near_duplicate_threshold, imbalance_ratio=imbalance_ratio)


def validate_legacy_file(path, *, separator: str = "\n\n###\n\n", stop: str = " END", min_examples: int = 10,
                         near_duplicate_threshold: float = 0.95, valid_path=None, imbalance_ratio: float = 3.0,
                         label_of: Callable[[dict], str | None] | None = None) -> Report:
    """Validate a legacy ``{"prompt": ..., "completion": ...}`` JSONL file and its optional validation file.

    ``label_of`` defaults to the completion without its leading space and stop sequence, when that is one or
    two words (a classifier's label); longer completions are left out of the balance check.
    """
    def prompt_text(example):
        prompt = example.get("prompt")
        return prompt.removesuffix(separator) if isinstance(prompt, str) else ""

    def completion_label(example):
        completion = example.get("completion")
        return _short_label(completion.removesuffix(stop)) if isinstance(completion, str) else None

    return _validate(path, lambda line, ex, out: _check_legacy(line, ex, out, separator, stop),
                     input_of=prompt_text, label_of=label_of or completion_label, valid_path=valid_path,
                     min_examples=min_examples, threshold=near_duplicate_threshold, imbalance_ratio=imbalance_ratio)
