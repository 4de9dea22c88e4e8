"""Repair a fine-tuning file, in the manner of OpenAI's old ``prepare_data`` tool, and write ``*_prepared.jsonl``.

:mod:`helpers.validate` finds every defect and changes nothing. This module applies the standard fixes that
are safe to make without asking, reports each change with its line, and writes the result next to the input
as ``<name>_prepared.jsonl``:

- one JSON document (a pretty-printed array) becomes JSON Lines; blank lines go; a byte-order mark goes;
- a line saved in Latin-1 (or Windows-1252) is decoded as such; a Python ``str(dict)`` line is read as a dict;
- chat: a bare list of messages gets its ``{"messages": ...}`` wrapper, a single message object becomes a list,
  a legacy prompt/completion line becomes chat, roles such as ``human`` and ``bot`` become ``user`` and
  ``assistant``, unknown keys and invalid ``weight`` values are removed;
- legacy: the separator is added to each prompt, a leading space and the stop sequence to each completion,
  unknown keys are removed;
- exact duplicates are dropped, and so is every example that still has an error (each with its reason).

The input is never changed, and preparing a prepared file changes nothing more. From a shell::

    python -m helpers.prepare data/broken/chat_train.jsonl
    python -m helpers.prepare data/broken/legacy_train.jsonl --out outputs/legacy_prepared.jsonl
"""
from __future__ import annotations

import argparse
import ast
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from helpers import formats, validate

ROLE_ALIASES = {"human": "user", "person": "user", "bot": "assistant", "gpt": "assistant", "ai": "assistant",
                "model": "assistant"}


@dataclass
class Change:
    """One repair: where (``line`` from 1 in the input, None for the whole file), which defect, what was done."""
    line: int | None
    code: str
    action: str  # "fixed" or "dropped"
    detail: str

    def __str__(self) -> str:
        where = "file" if self.line is None else f"line {self.line}"
        return f"{where}: [{self.code}] {self.action}: {self.detail}"


@dataclass
class Prepared:
    """What :func:`prepare_file` did: the examples it kept, each change, and the file it wrote."""
    source: str
    kind: str  # "chat" or "legacy"
    examples: list = field(default_factory=list)
    changes: list = field(default_factory=list)
    out_path: Path | None = None

    @property
    def fixed(self) -> list[Change]:
        return [c for c in self.changes if c.action == "fixed"]

    @property
    def dropped(self) -> list[Change]:
        return [c for c in self.changes if c.action == "dropped"]

    def __str__(self) -> str:
        head = (f"{self.source}: {self.kind} file, kept {len(self.examples)} examples; {len(self.fixed)} fixes, "
                f"{len(self.dropped)} dropped" + (f" -> {self.out_path}" if self.out_path else ""))
        return "\n".join([head, *(f"  {c}" for c in self.changes)])


def _read(path: Path, changes: list) -> list[tuple[int, object]]:
    """(line, value) for each line that can be read at all; what was repaired or dropped goes to ``changes``."""
    data = path.read_bytes()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
        changes.append(Change(1, "bad_encoding", "fixed", "removed the byte-order mark"))
    stripped = data.strip()
    if stripped[:1] == b"[" and b"\n" in stripped:
        try:
            whole = json.loads(stripped.decode("utf-8"))
        except (ValueError, RecursionError):
            whole = None
        if isinstance(whole, list):
            changes.append(Change(None, "not_jsonl", "fixed", f"one JSON array of {len(whole)} items -> one per line"))
            return list(enumerate(whole, 1))
    values = []
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    for number, raw in enumerate(lines, 1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("cp1252", errors="replace")
            changes.append(Change(number, "bad_encoding", "fixed", "decoded as Windows-1252 / Latin-1"))
        if not text.strip():
            changes.append(Change(number, "blank_line", "dropped", "empty line"))
            continue
        try:
            values.append((number, json.loads(text)))
            continue
        except (ValueError, RecursionError):
            pass
        try:
            value = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            changes.append(Change(number, "not_json", "dropped", "not JSON, and no Python literal either"))
            continue
        values.append((number, value))
        changes.append(Change(number, "not_json", "fixed", "read a Python literal (single quotes) as JSON"))
    return values


def _detect_kind(values) -> str:
    objects = [v for _, v in values if isinstance(v, dict)]
    legacy = sum("prompt" in v and "messages" not in v for v in objects)
    return "legacy" if objects and legacy > len(objects) / 2 else "chat"


def _fix_chat(line: int, value, separator: str, stop: str, changes: list):
    """The chat example that ``value`` can be repaired into (or ``value`` as it is)."""
    if isinstance(value, list) and value and all(isinstance(m, dict) and "role" in m for m in value):
        changes.append(Change(line, "not_object", "fixed", 'wrapped the list of messages in {"messages": ...}'))
        value = {"messages": value}
    if not isinstance(value, dict):
        return value
    if "messages" not in value and isinstance(value.get("prompt"), str) and isinstance(value.get("completion"), str):
        changes.append(Change(line, "missing_messages", "fixed", "converted the prompt/completion record to chat"))
        value = formats.legacy_to_chat(value, separator, stop)
    if isinstance(value.get("messages"), dict):
        changes.append(Change(line, "messages_not_list", "fixed", "put the single message into a list"))
        value = {**value, "messages": [value["messages"]]}
    for key in sorted(value.keys() - validate.CHAT_KEYS):
        changes.append(Change(line, "unknown_key", "fixed", f"removed the key {key!r}"))
    value = {k: v for k, v in value.items() if k in validate.CHAT_KEYS}
    if isinstance(value.get("messages"), list):
        value["messages"] = [_fix_message(line, i, m, changes) for i, m in enumerate(value["messages"], 1)]
    return value


def _fix_message(line: int, i: int, message, changes: list):
    if not isinstance(message, dict):
        return message
    message = dict(message)
    role = message.get("role")
    if isinstance(role, str) and role not in validate.ROLES and role.lower() in ROLE_ALIASES:
        message["role"] = ROLE_ALIASES[role.lower()]
        changes.append(Change(line, "unknown_role", "fixed", f"message {i}: role {role!r} -> {message['role']!r}"))
    for key in sorted(message.keys() - validate.MESSAGE_KEYS):
        changes.append(Change(line, "unknown_key", "fixed", f"message {i}: removed the key {key!r}"))
        del message[key]
    weight = message.get("weight", 1)
    if "weight" in message and (message.get("role") != "assistant" or isinstance(weight, bool) or weight not in (0, 1)):
        changes.append(Change(line, "bad_weight", "fixed", f"message {i}: removed weight {weight!r} (it is learned)"))
        del message["weight"]
    return message


def _fix_legacy(line: int, value, separator: str, stop: str, changes: list):
    if not isinstance(value, dict):
        return value
    for key in sorted(value.keys() - validate.LEGACY_KEYS):
        changes.append(Change(line, "unknown_key", "fixed", f"removed the key {key!r}"))
    value = {k: v for k, v in value.items() if k in validate.LEGACY_KEYS}
    prompt, completion = value.get("prompt"), value.get("completion")
    if isinstance(prompt, str) and prompt.strip() and separator and not prompt.endswith(separator):
        if separator not in prompt:
            value["prompt"] = prompt.rstrip() + separator
            changes.append(Change(line, "missing_separator", "fixed", "added the separator to the prompt"))
    if isinstance(completion, str) and completion.strip():
        if not completion[0].isspace():
            completion = " " + completion
            changes.append(Change(line, "no_leading_space", "fixed", "added a leading space to the completion"))
        if stop and not completion.endswith(stop):
            completion = completion.rstrip() + stop
            changes.append(Change(line, "missing_stop", "fixed", f"added the stop sequence {stop!r}"))
        value["completion"] = completion
    return value


def _errors(value, kind: str, separator: str, stop: str, count_tokens, max_tokens: int) -> list[str]:
    """The error codes that the validator still finds in one repaired example."""
    out = validate._Findings("example")
    if not isinstance(value, dict):
        return ["not_object"]
    if kind == "chat":
        validate._check_chat(1, value, out, count_tokens, max_tokens)
    else:
        validate._check_legacy(1, value, out, separator, stop)
    return sorted({f.code for f in out if f.severity == "error"})


def prepare_examples(values, kind: str = "chat", *, separator: str = formats.SEPARATOR, stop: str = formats.STOP,
                     count_tokens=None, max_tokens: int = 16_385, changes: list | None = None):
    """Repair ``values`` (``(line, value)`` pairs); return ``(examples kept, changes)``."""
    if count_tokens is None:
        from helpers.tokens import count_chat_tokens as count_tokens
    changes = [] if changes is None else changes
    fix = _fix_chat if kind == "chat" else _fix_legacy
    kept, seen = [], {}
    for line, value in values:
        value = fix(line, value, separator, stop, changes)
        errors = _errors(value, kind, separator, stop, count_tokens, max_tokens)
        if errors:
            changes.append(Change(line, errors[0], "dropped", "still " + ", ".join(errors) + " after the fixes"))
            continue
        key = json.dumps(value, sort_keys=True, ensure_ascii=False)
        if key in seen:
            changes.append(Change(line, "exact_duplicate", "dropped", f"a copy of line {seen[key]}"))
            continue
        seen[key] = line
        kept.append(value)
    return kept, changes


def prepared_path(path) -> Path:
    """``train.jsonl`` -> ``train_prepared.jsonl``, beside it."""
    path = Path(path)
    return path.with_name(f"{path.stem}_prepared.jsonl")


def prepare_file(path, out=None, *, kind: str = "auto", separator: str = formats.SEPARATOR,
                 stop: str = formats.STOP, write: bool = True, **options) -> Prepared:
    """Repair the JSONL file ``path`` and write the result to ``out`` (default ``<name>_prepared.jsonl``).

    ``kind`` is ``"chat"``, ``"legacy"`` or ``"auto"`` (legacy when most lines are prompt/completion records).
    The input is never written: ``out`` may not name it. ``options`` go to :func:`prepare_examples`."""
    path = Path(path)
    changes: list[Change] = []
    values = _read(path, changes)
    kind = _detect_kind(values) if kind == "auto" else kind
    if kind not in ("chat", "legacy"):
        raise ValueError(f"kind must be 'chat', 'legacy' or 'auto', not {kind!r}")
    examples, changes = prepare_examples(values, kind, separator=separator, stop=stop, changes=changes, **options)
    changes.sort(key=lambda c: (c.line is not None, c.line or 0))
    result = Prepared(str(path), kind, examples, changes)
    if write:
        target = Path(out) if out is not None else prepared_path(path)
        if target.resolve() == path.resolve():
            raise ValueError(f"{target} is the input file: write the prepared file somewhere else")
        result.out_path = formats.write_jsonl(examples, target)
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers.prepare", description=__doc__.splitlines()[0])
    parser.add_argument("file", help="the JSONL file to repair (it is never changed)")
    parser.add_argument("--out", help="where to write (default: <name>_prepared.jsonl beside the input)")
    parser.add_argument("--kind", choices=("auto", "chat", "legacy"), default="auto")
    parser.add_argument("--separator", default=formats.SEPARATOR, help="legacy prompts end with this")
    parser.add_argument("--stop", default=formats.STOP, help="legacy completions end with this")
    args = parser.parse_args(argv)
    try:
        result = prepare_file(args.file, args.out, kind=args.kind, separator=args.separator, stop=args.stop)
    except (OSError, ValueError) as exc:
        print(f"cannot prepare {args.file}: {exc}", file=sys.stderr)
        return 1
    print(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
