"""A local server that speaks the OpenAI fine-tuning REST API and really trains the course's base model.

Start it with ``python -m helpers.server --port 8765 --workspace DIR [--api-key KEY]`` (or let
:func:`helpers.api.client` start it), then use the official ``openai`` SDK with ``base_url`` pointing at it.
For a class: ``python -m helpers.server --host 0.0.0.0 --keys students.csv`` (workshop mode, :mod:`.tenants`).

Modules:

- ``app``: the FastAPI routes (files, fine-tuning jobs, events, checkpoints, models, chat/completions), plus
  vLLM's ``POST /v1/load_lora_adapter`` to serve a LoRA adapter trained outside the server, and the
  instructor's ``GET /v1/workshop/overview``.
- ``params``: reading a request (JSON body, query, sampling settings, messages, the context limit).
- ``jobs``: job requests and records, training one job (:mod:`helpers.sft`), events, recovery.
- ``scheduler``: the training queue shared by all tenants (fair between them) and its two worker threads.
- ``tenants``: workshop mode: the keys file, one workspace per student, what each caller may see.
- ``limits``: per-student limits and the requests-per-minute limiter.
- ``workshop``: the instructor's overview.
- ``inference``: lazy model loading (LRU cache) and generation, plain and streamed; token counting.
- ``shapes``: the JSON objects, shaped as OpenAI's published schema has them.
- ``store``: atomic JSON persistence under the workspace folder.
"""
from helpers.server.app import create_app

__all__ = ["create_app"]
