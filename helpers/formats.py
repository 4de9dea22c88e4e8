"""Training-data formats: JSONL, OpenAI chat, legacy prompt/completion, Alpaca; labels; splits.

- **Chat** (OpenAI fine-tuning today): ``{"messages": [{"role": "system"|"user"|"assistant", "content": ...}]}``
- **Legacy prompt/completion** (babbage-002, davinci-002): every prompt ends with the same fixed
  *separator*, so the model knows where the input stops; every completion starts with a space (most
  tokens begin with one) and ends with a *stop sequence*, so the model learns when to stop.
- **Alpaca**: ``instruction``, ``input``, ``output``, plus optional ``system`` and ``history``
  (earlier ``[user, assistant]`` turns), which become a multi-turn chat.
"""
from __future__ import annotations

import json
import os
import random
import re
import unicodedata
from collections import defaultdict
from pathlib import Path

SEPARATOR = "\n\n###\n\n"
STOP = " END"


class FormatError(ValueError):
    """A file or record that cannot be read as the expected format."""


# ---------------------------------------------------------------- JSONL
def read_jsonl(path) -> list[dict]:
    """Read a JSONL file. A bad line raises :class:`FormatError` naming the file and line."""
    path = Path(path)
    rows = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise FormatError(f"{path}: cannot read the file ({exc}). Fix: check the path and save it as UTF-8.") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise FormatError(f"{path}:{number}: not valid JSON ({exc.msg} at column {exc.colno}). "
                              "Fix: each line must hold exactly one JSON object. "
                              "helpers.validate reports every bad line at once.") from None
    return rows


def write_jsonl(rows, path) -> Path:
    """Write one JSON object per line (UTF-8, atomically: a crash never leaves half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(path)
    return path


# ---------------------------------------------------------------- chat
def chat_example(user: str, assistant: str, system: str | None = None) -> dict:
    """One chat training example."""
    messages = [{"role": "system", "content": system}] if system else []
    return {"messages": messages + [{"role": "user", "content": user},
                                    {"role": "assistant", "content": assistant}]}


def _last(messages, role):
    found = [m for m in messages if m.get("role") == role]
    if not found:
        raise FormatError(f"The example has no {role} message: {json.dumps(messages)[:120]}")
    return found[-1]["content"]


# ---------------------------------------------------------------- legacy prompt/completion
def chat_to_legacy(example: dict, separator: str = SEPARATOR, stop: str = STOP) -> dict:
    """Chat -> ``{"prompt", "completion"}``: the conversation before the last reply, then the separator."""
    messages = example["messages"]
    reply = _last(messages, "assistant")
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    context = [m["content"] for m in messages[:last]]
    prompt = "\n".join(context).replace(separator, " ") + separator
    return {"prompt": prompt, "completion": " " + reply.strip() + stop}


def legacy_to_chat(record: dict, separator: str = SEPARATOR, stop: str = STOP, system: str | None = None) -> dict:
    """``{"prompt", "completion"}`` -> chat: strip the separator, leading space and stop sequence."""
    prompt, completion = record["prompt"], record["completion"]
    if prompt.endswith(separator):
        prompt = prompt[: -len(separator)]
    if stop and completion.endswith(stop):
        completion = completion[: -len(stop)]
    return chat_example(prompt.strip(), completion.strip(), system)


# ---------------------------------------------------------------- Alpaca
def alpaca_to_chat(record: dict) -> dict:
    """Alpaca -> chat. ``system`` becomes the system message, ``history`` earlier turns."""
    messages = []
    if (record.get("system") or "").strip():
        messages.append({"role": "system", "content": record["system"].strip()})
    for turn in record.get("history") or []:
        if not (isinstance(turn, (list, tuple)) and len(turn) == 2):
            raise FormatError(f"Alpaca history turns must be [user, assistant] pairs, got {turn!r}.")
        messages += [{"role": "user", "content": turn[0]}, {"role": "assistant", "content": turn[1]}]
    user = record["instruction"].strip()
    if (record.get("input") or "").strip():
        user += "\n\n" + record["input"].strip()
    messages += [{"role": "user", "content": user}, {"role": "assistant", "content": record["output"].strip()}]
    return {"messages": messages}


def chat_to_alpaca(example: dict) -> dict:
    """Chat -> Alpaca: the last exchange is instruction/output, earlier exchanges are history."""
    messages = example["messages"]
    system = " ".join(m["content"] for m in messages if m["role"] == "system")
    turns = [m for m in messages if m["role"] in ("user", "assistant")]
    pairs = [(turns[i]["content"], turns[i + 1]["content"]) for i in range(0, len(turns) - 1, 2)
             if turns[i]["role"] == "user" and turns[i + 1]["role"] == "assistant"]
    if not pairs:
        raise FormatError("A chat example needs at least one user message followed by an assistant reply.")
    (instruction, output), history = pairs[-1], [list(p) for p in pairs[:-1]]
    return {"instruction": instruction, "input": "", "output": output, "system": system, "history": history}


# ---------------------------------------------------------------- single-token labels
def token_counts(labels, encoders: dict, leading_space: bool = True) -> dict:
    """``{label: {encoder_name: n_tokens}}`` for each label.

    ``leading_space=True`` counts the label as a legacy completion sees it (``" heating"``); a chat reply
    starts without a space (``"heating"``), where a label can take more tokens. Then what matters is that
    every label starts with a different first token.
    """
    prefix = " " if leading_space else ""
    return {label: {name: len(encode(prefix + label)) for name, encode in encoders.items()} for label in labels}


def first_tokens_differ(labels, encoders: dict, leading_space: bool = False) -> bool:
    """True when no two labels share their first token under any encoder (one token then decides)."""
    prefix = " " if leading_space else ""
    return all(len({tuple(encode(prefix + label)[:1]) for label in labels}) == len(set(labels))
               for encode in encoders.values())


def single_token_labels(class_names, encoders: dict, leading_space: bool = True) -> dict:
    """Map class names to labels that are ONE token for every encoder (so one generated token decides).

    Keep a name that already is; else try its first word, lower-cased; else fall back to numbers.
    ``encoders`` maps a name to a function text -> token ids (e.g. ``tiktoken`` and the model tokenizer).
    """
    prefix = " " if leading_space else ""

    def single(text):
        return all(len(encode(prefix + text)) == 1 for encode in encoders.values())

    mapping, used = {}, set()
    for name in class_names:
        candidates = [name, name.lower(), re.split(r"[\s_\-/]+", name.lower())[0]]
        label = next((c for c in candidates if c not in used and single(c)), None)
        if label is None:
            label = next(str(n) for n in range(1, 1000) if str(n) not in used and single(str(n)))
        mapping[name] = label
        used.add(label)
    return mapping


# ---------------------------------------------------------------- splits without leakage
def leakage_key(text: str) -> str:
    """Text reduced so that trivial variants (case, spacing, punctuation, accents) collide."""
    text = unicodedata.normalize("NFKD", text.casefold())
    return " ".join(re.sub(r"[^\w\s]", " ", text).split())


def split_train_valid(rows: list, valid_fraction: float = 0.2, seed: int = 0, text_of=None, label_of=None):
    """Split ``rows`` into train and validation lists with no leakage.

    Rows whose text reduces to the same :func:`leakage_key` stay on the same side, and the split is
    stratified by ``label_of`` (when given) so both sides keep the class balance.
    """
    text_of = text_of or (lambda r: r["text"] if "text" in r else _last(r["messages"], "user"))
    label_of = label_of or (lambda r: None)
    groups = defaultdict(list)
    for row in rows:
        groups[leakage_key(text_of(row))].append(row)
    by_label = defaultdict(list)
    for key, members in groups.items():
        by_label[label_of(members[0])].append(key)
    rng = random.Random(seed)
    train, valid = [], []
    for label in sorted(by_label, key=str):
        keys = sorted(by_label[label])
        rng.shuffle(keys)
        n_valid = round(len(keys) * valid_fraction)
        for i, key in enumerate(keys):
            (valid if i < n_valid else train).extend(groups[key])
    return train, valid
