"""Text generation for ``/v1/chat/completions`` and ``/v1/completions``.

Models are loaded lazily: the base model once, then each fine-tuned model or checkpoint (a LoRA adapter)
on first use, attached to the same base weights (see :class:`Engine`). One generation runs at a time (a
lock), next to training in the worker thread.

Sampling follows the OpenAI API: ``temperature`` defaults to 1 (0 means greedy), ``top_p`` to 1, ``seed``
makes sampling repeat, ``stop`` (a string or up to 4) ends the text before the stop sequence, and
``finish_reason`` is ``length`` when ``max_tokens`` ran out, else ``stop``.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass

MAX_ADAPTERS = 8  # LoRA adapters kept loaded (about 2 MB each); the least recently used one goes first


@dataclass
class Generated:
    text: str
    finish_reason: str  # "stop" or "length"
    prompt_tokens: int
    completion_tokens: int


def _cut(text: str, stop: list[str]) -> tuple[str, bool]:
    """``text`` up to the earliest stop sequence, and whether one was found."""
    hits = [i for i in (text.find(s) for s in stop) if i >= 0]
    return (text[:min(hits)], True) if hits else (text, False)


class Engine:
    """Generates text with the base model or a LoRA adapter folder (``path=None`` means the base model).

    The base weights are in memory once: every fine-tuned model and checkpoint is a small LoRA adapter
    attached to them (peft's multi-adapter model), switched per request, and the base model answers with
    the adapters switched off. So a server with many fine-tuned models needs about one model's memory.
    """

    def __init__(self, max_adapters: int = MAX_ADAPTERS):
        self.lock = threading.Lock()  # one generation (and one load) at a time
        self.base = self.peft = self._tokenizer = None
        self.template = None  # the base model, never wrapped by peft; shares its weights with self.base
        self.adapters: OrderedDict = OrderedDict()  # path -> adapter name, least recently used first
        self.max_adapters, self._count = max_adapters, 0
        self._counter = None  # a tokenizer of its own for counting prompts, so counting never waits for generation
        self._count_lock = threading.Lock()
        self._context: int | None = None

    def load(self, path: str | None):
        """``(model, tokenizer, context)``: run ``model`` inside ``context`` to use ``path``'s weights."""
        from contextlib import nullcontext

        self._load_base()
        if path is None:
            return (self.base, self.tokenizer, nullcontext()) if self.peft is None else \
                (self.peft, self.tokenizer, self.peft.disable_adapter())
        if path not in self.adapters:
            from peft import PeftModel

            self._count += 1
            name = f"adapter{self._count}"
            if self.peft is None:
                self.peft = PeftModel.from_pretrained(self.base, path, adapter_name=name)
            else:
                self.peft.load_adapter(path, adapter_name=name)
            self.peft.eval()
            self.adapters[path] = name
            while len(self.adapters) > self.max_adapters:
                self.peft.delete_adapter(self.adapters.popitem(last=False)[1])
        self.adapters.move_to_end(path)
        self.peft.set_adapter(self.adapters[path])
        return self.peft, self.tokenizer, nullcontext()

    def _load_base(self) -> None:
        if self.base is None:
            from helpers.model import load_base_model, shared_weights_copy
            self.base, _ = load_base_model()
            self.template = shared_weights_copy(self.base)

    def base_for_training(self):
        """A copy of the base model for a LoRA job that shares the base weights with inference, so a
        server that trains while it answers holds one copy of the weights, not two."""
        from helpers.model import shared_weights_copy

        with self.lock:
            self._load_base()
            return shared_weights_copy(self.template)

    def forget(self, path: str | None) -> None:
        """Unload an adapter (after its files were deleted)."""
        with self.lock:
            name = self.adapters.pop(path, None)
            if name is not None:
                if not self.adapters:  # peft keeps one adapter loaded at least: drop the wrapper
                    self.base = self.peft = self.template = None
                else:
                    self.peft.set_adapter(next(iter(self.adapters.values())))
                    self.peft.delete_adapter(name)

    @property
    def tokenizer(self):
        """The engine's own copy of the base tokenizer (adapters keep it): a fast tokenizer must not be
        used by two threads at once, and the trainer uses the shared one."""
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            from helpers.model import load_tokenizer, model_source
            self._tokenizer = AutoTokenizer.from_pretrained(model_source())
            self._tokenizer.pad_token = load_tokenizer().pad_token
        return self._tokenizer

    @property
    def context_length(self) -> int:
        """The most tokens (prompt and reply together) the base model reads: its ``max_position_embeddings``."""
        if self._context is None:
            from transformers import AutoConfig

            from helpers.model import model_source
            config = AutoConfig.from_pretrained(model_source())
            self._context = int(getattr(config, "max_position_embeddings", None) or 2048)
        return self._context

    def _counting_tokenizer(self):
        if self._counter is None:
            from transformers import AutoTokenizer

            from helpers.model import model_source
            self._counter = AutoTokenizer.from_pretrained(model_source())
        return self._counter

    def count_tokens(self, text: str) -> int:
        """How many tokens ``text`` is to the model (counted without the model: no wait for a generation)."""
        with self._count_lock:
            return len(self._counting_tokenizer()(text, add_special_tokens=False)["input_ids"])

    def prompt_text(self, messages: list[dict] | None = None, prompt: str | None = None) -> str:
        """The text the model sees: the chat template for ``messages``, or the raw legacy ``prompt``."""
        if messages is None:
            return prompt or ""
        from helpers.model import chat_prompt
        with self._count_lock:
            return chat_prompt(self._counting_tokenizer(), messages)

    def _run(self, path, text, *, max_tokens, temperature, top_p, stop, seed, streamer=None):
        import torch

        model, tokenizer, context = self.load(path)
        batch = tokenizer([text], return_tensors="pt", add_special_tokens=False).to(model.device)
        n_prompt = int(batch["input_ids"].shape[1])
        if temperature and temperature > 0:
            sampling = {"do_sample": True, "temperature": float(temperature), "top_p": float(top_p)}
            if seed is not None:
                torch.manual_seed(int(seed))
        else:
            sampling = {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
        extra = {"stop_strings": stop, "tokenizer": tokenizer} if stop else {}
        with torch.no_grad(), context:
            out = model.generate(**batch, max_new_tokens=max_tokens, pad_token_id=tokenizer.pad_token_id,
                                 streamer=streamer, **sampling, **extra)
        new = out[0, n_prompt:]
        eos = tokenizer.eos_token_id
        ended = len(new) > 0 and int(new[-1]) == eos
        n_new = len(new) - (1 if ended else 0)
        return tokenizer.decode(new, skip_special_tokens=True), ended, n_prompt, n_new

    def generate(self, path: str | None, text: str, *, max_tokens: int, temperature: float = 1.0,
                 top_p: float = 1.0, stop: list[str] | None = None, seed: int | None = None,
                 strip: bool = True) -> Generated:
        """One reply to ``text`` (a full prompt). ``strip`` trims whitespace as chat replies are trimmed."""
        with self.lock:
            raw, ended, n_prompt, n_new = self._run(path, text, max_tokens=max_tokens, temperature=temperature,
                                                    top_p=top_p, stop=stop, seed=seed)
        body, stopped = _cut(raw, stop or [])
        finish = "stop" if stopped or ended or n_new < max_tokens else "length"
        return Generated(body.strip() if strip else body, finish, n_prompt, n_new)

    def stream(self, path: str | None, text: str, *, max_tokens: int, temperature: float = 1.0,
               top_p: float = 1.0, stop: list[str] | None = None, seed: int | None = None,
               strip: bool = True) -> Iterator[str | Generated]:
        """Yield pieces of the reply as they are generated, then one :class:`Generated` with the totals.

        Text that could be the start of a stop sequence (or, with ``strip``, trailing whitespace) is held
        back until it is known not to be one.
        """
        from transformers import TextIteratorStreamer

        stop = stop or []
        with self.lock:
            tokenizer = self.tokenizer
        streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=600)
        result: dict = {}

        def work():
            try:
                with self.lock:
                    result["out"] = self._run(path, text, max_tokens=max_tokens, temperature=temperature,
                                              top_p=top_p, stop=stop, seed=seed, streamer=streamer)
            except BaseException as exc:  # noqa: BLE001 - reported to the caller below
                result["error"] = exc
                streamer.end()

        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        hold = max((len(s) for s in stop), default=1) - 1
        sent, seen, stopped = 0, "", False
        for piece in streamer:
            if stopped:
                continue
            seen += piece
            if strip and sent == 0:
                seen = seen.lstrip()
            body, stopped = _cut(seen, stop)
            ready = body if stopped else body[:max(sent, len(body) - hold)]
            if strip:
                ready = ready.rstrip()
            if len(ready) > sent:
                yield ready[sent:]
                sent = len(ready)
        thread.join()
        if "error" in result:
            raise result["error"]
        _, ended, n_prompt, n_new = result["out"]
        body, stopped = _cut(seen, stop)
        if strip:
            body = body.rstrip()
        if len(body) > sent:
            yield body[sent:]
        finish = "stop" if stopped or ended or n_new < max_tokens else "length"
        yield Generated(body, finish, n_prompt, n_new)
