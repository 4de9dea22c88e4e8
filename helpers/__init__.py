"""helpers: the tested code behind the fine-tuning course notebooks.

Each module has one concern:

- ``environment``: mode (ci / cpu / gpu), seeds, threads, quiet CI, the environment check.
- ``model``: the offline SmolLM2-135M-Instruct base model and chatting with it.
- ``tokens``: offline tiktoken encodings, chat token counts, cost estimates.
- ``formats``: JSONL, chat / legacy prompt-completion / Alpaca conversions, labels, splits.
- ``validate``: one-pass validation reports for training files.
- ``datasets``: public datasets (download, cache, verify, parse) with attribution.
- ``collect``: scraping, LLM-generated data with a review loop.
- ``clean``: normalising, de-duplicating, PII scrubbing, offensive-content flags, balance.
- ``course_data``: loaders for the smart-home data that the course ships in ``data/``.
- ``evaluate``: scoring models on the course tasks (intent accuracy, manual answers).
- ``rag``: chunking, offline MiniLM embeddings, numpy and faiss search, retrieval metrics, RAG prompts.
- ``sft``: fine-tuning on TRL's ``SFTTrainer`` (reply-only labels, loss at labelled positions, OpenAI's
  result-file columns, pause and cancel); ``sft_launch``: the same training as a script, also under
  ``accelerate launch`` (DDP, DeepSpeed ZeRO).
- ``checks`` and ``expectations``: ✓/⚠ checks of measured values against one table of ranges per mode.
- ``prepare``: repairs a training file where it safely can (``python -m helpers.prepare FILE``).
- ``server``: the local server that speaks the OpenAI fine-tuning REST API (``python -m helpers.server``).
- ``api``: the notebooks' client for the local server, OpenAI or Azure OpenAI, with a cost guard.
- ``plots``: plots that redraw in place (``LivePlot``, a widget with a PNG fallback) and figure export.
- ``metrics``: result files of every service in one schema, fit diagnosis, classification and generation
  scores.
- ``compare``, ``ship``: notebook 07's side-by-side systems; notebook 08's serving, drift and risk probes.
- ``colab``: installs what Colab lacks, keeping its torch.
- ``exercises``: check functions for the notebook exercises.
"""
from helpers.environment import setup

__all__ = ["setup"]
