"""A local server that speaks the OpenAI fine-tuning REST API and really trains the course's base model.

Start it with ``python -m helpers.server --port 8765 --workspace DIR [--api-key KEY]`` (or let
:func:`helpers.api.client` start it), then use the official ``openai`` SDK with ``base_url`` pointing at it.

Modules:

- ``app``: the FastAPI routes (files, fine-tuning jobs, events, checkpoints, models, chat/completions), plus
  vLLM's ``POST /v1/load_lora_adapter`` to serve a LoRA adapter trained outside the server.
- ``jobs``: request checks, the job queue and its one training thread (:mod:`helpers.trainer`), recovery.
- ``inference``: lazy model loading (LRU cache) and generation, plain and streamed.
- ``shapes``: the JSON objects, shaped as OpenAI sends them.
- ``store``: atomic JSON persistence under the workspace folder.
"""
from helpers.server.app import create_app

__all__ = ["create_app"]
