"""Count tokens the way OpenAI bills them, offline, and estimate fine-tuning cost.

tiktoken normally downloads its encodings on first use. :func:`install_offline_encodings` rebuilds
``o200k_base`` and ``cl100k_base`` byte for byte from the vocabularies inside the PyPI package
``quicktok-v1``, checks them against the SHA-256 that tiktoken itself expects, and writes them into
``TIKTOKEN_CACHE_DIR``. After that, plain ``tiktoken.get_encoding("o200k_base")`` works offline.
"""
from __future__ import annotations

import base64
import functools
import hashlib
import json
import os
import struct
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from helpers.environment import DATA_DIR, cache_dir

# tiktoken's download address and expected SHA-256 for each encoding (tiktoken_ext/openai_public.py).
ENCODINGS = {
    "o200k_base": ("https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
                   "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d", "o200k"),
    "cl100k_base": ("https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
                    "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7", "cl100k"),
}
PRICES_FILE = DATA_DIR / "openai_prices.json"

# The default-epoch rule from OpenAI's fine-tuning docs and data-prep cookbook.
TARGET_EPOCHS, MIN_TARGET_EXAMPLES, MAX_TARGET_EXAMPLES = 3, 100, 25_000
MIN_DEFAULT_EPOCHS, MAX_DEFAULT_EPOCHS = 1, 25
MAX_TOKENS_PER_EXAMPLE = 16_385  # the cookbook caps each example's billed tokens here


class EncodingUnavailable(RuntimeError):
    """The offline encodings could not be built."""


def _tiktoken_file(quicktok_name: str) -> bytes:
    """Rebuild a ``.tiktoken`` file (``base64(token) rank`` per line) from quicktok's binary vocab."""
    try:
        blob = resources.files("quicktok").joinpath("data", f"{quicktok_name}.vocab").read_bytes()
    except (ModuleNotFoundError, FileNotFoundError) as exc:
        raise EncodingUnavailable(
            "The package quicktok-v1 is missing, so the OpenAI encodings cannot be built offline. "
            "Fix: pip install -r requirements.txt") from exc
    (count,), offset, records = struct.unpack_from("<I", blob, 0), 4, []
    for _ in range(count):
        (length,) = struct.unpack_from("<H", blob, offset)
        raw = blob[offset + 2: offset + 2 + length]
        (rank,) = struct.unpack_from("<I", blob, offset + 2 + length)
        records.append((rank, raw))
        offset += 6 + length
    records.sort()
    return b"".join(base64.b64encode(raw) + b" %d\n" % rank for rank, raw in records)


def install_offline_encodings(target: Path | None = None) -> Path:
    """Write verified ``o200k_base`` and ``cl100k_base`` files where tiktoken looks; return the folder."""
    folder = Path(target or os.environ.get("TIKTOKEN_CACHE_DIR") or cache_dir() / "tiktoken")
    folder.mkdir(parents=True, exist_ok=True)
    os.environ["TIKTOKEN_CACHE_DIR"] = str(folder)
    for name, (url, expected, quicktok_name) in ENCODINGS.items():
        path = folder / hashlib.sha1(url.encode()).hexdigest()  # tiktoken's cache key
        if path.exists() and hashlib.sha256(path.read_bytes()).hexdigest() == expected:
            continue
        data = _tiktoken_file(quicktok_name)
        actual = hashlib.sha256(data).hexdigest()
        if actual != expected:
            raise EncodingUnavailable(f"The rebuilt {name} has SHA-256 {actual}, not tiktoken's {expected}. "
                                      "Fix: reinstall the locked quicktok-v1 version.")
        tmp = path.with_suffix(f".{os.getpid()}.tmp")   # two processes may install at once
        tmp.write_bytes(data)
        tmp.replace(path)
    return folder


@functools.lru_cache(maxsize=None)
def _encoding(name: str):
    import tiktoken

    install_offline_encodings()
    return tiktoken.get_encoding(name)


def encoding_for(model: str = "gpt-4o-mini"):
    """The tiktoken encoding OpenAI uses for ``model`` (o200k for gpt-4o/4.1 families, else cl100k)."""
    name = model.split(":")[1] if model.startswith("ft:") else model
    modern = name.startswith(("gpt-4o", "gpt-4.1", "gpt-5", "o1", "o3", "o4"))
    return _encoding("o200k_base" if modern else "cl100k_base")


def count_text_tokens(text: str, model: str = "gpt-4o-mini") -> int:
    return len(encoding_for(model).encode(text, disallowed_special=()))


def count_chat_tokens(messages: list[dict], model: str = "gpt-4o-mini") -> int:
    """Tokens in a chat example as OpenAI counts them: 3 per message, 1 per name, 3 to prime the reply."""
    enc = encoding_for(model)
    total = 3
    for message in messages:
        total += 3
        for key, value in message.items():
            if isinstance(value, str):
                total += len(enc.encode(value, disallowed_special=()))
                total += 1 if key == "name" else 0
    return total


def count_message_tokens(messages: list[dict], model: str = "gpt-4o-mini") -> list[int]:
    """Per-message content tokens, for histograms by role."""
    enc = encoding_for(model)
    return [len(enc.encode(str(m.get("content") or ""), disallowed_special=())) for m in messages]


def default_epochs(n_examples: int) -> int:
    """OpenAI's ``n_epochs="auto"``: aim for 3 epochs, but 100–25,000 example-passes in all.

    Integer division, exactly as in OpenAI's data-prep cookbook (so 30 examples get 3 epochs)."""
    if n_examples <= 0:
        raise ValueError("default_epochs needs at least one training example.")
    if n_examples * TARGET_EPOCHS < MIN_TARGET_EXAMPLES:
        return min(MAX_DEFAULT_EPOCHS, MIN_TARGET_EXAMPLES // n_examples)
    if n_examples * TARGET_EPOCHS > MAX_TARGET_EXAMPLES:
        return max(MIN_DEFAULT_EPOCHS, MAX_TARGET_EXAMPLES // n_examples)
    return TARGET_EPOCHS


def load_prices(path: Path = PRICES_FILE) -> dict:
    """The price table: ``{"as_of", "source", "models": {name: {training, input, output}}}`` in USD per 1M tokens."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


@dataclass
class CostEstimate:
    model: str
    n_examples: int
    n_epochs: int
    tokens_per_epoch: int
    billed_tokens: int
    usd: float
    price_per_million: float
    prices_as_of: str

    def __str__(self) -> str:
        return (f"{self.model}: {self.n_examples} examples x {self.n_epochs} epochs, "
                f"{self.tokens_per_epoch:,} tokens per epoch -> {self.billed_tokens:,} billed tokens "
                f"≈ ${self.usd:,.{2 if self.usd >= 1 else 4}f} (at ${self.price_per_million}/1M, prices as of {self.prices_as_of})")


def estimate_training_cost(examples: list[dict], model: str = "gpt-4o-mini-2024-07-18",
                           n_epochs: int | str = "auto") -> CostEstimate:
    """Billed training tokens (each example capped, times epochs) and dollars, from the price table."""
    table = load_prices()
    base = model.split(":")[1] if model.startswith("ft:") else model
    if base not in table["models"]:
        known = ", ".join(sorted(table["models"]))
        raise KeyError(f"No training price for {model!r} in {PRICES_FILE.name}. Known models: {known}. "
                       "Fix: pick one of these, or add the model to the price table.")
    lengths = [min(MAX_TOKENS_PER_EXAMPLE, count_chat_tokens(ex["messages"], base) if "messages" in ex
                   else count_text_tokens(str(ex.get("prompt", "")) + str(ex.get("completion", "")), base))
               for ex in examples]
    epochs = default_epochs(len(lengths)) if n_epochs == "auto" else int(n_epochs)
    per_epoch = sum(lengths)
    price = table["models"][base]["training"]
    billed = per_epoch * epochs
    return CostEstimate(model=model, n_examples=len(lengths), n_epochs=epochs, tokens_per_epoch=per_epoch,
                        billed_tokens=billed, usd=billed * price / 1e6, price_per_million=price,
                        prices_as_of=table["as_of"])
