"""helpers.compare: sentence passages, prompts, grounded decoding, timing and cost, fact edits, errors, advice."""
import numpy as np
import pandas as pd
import pytest

from helpers import compare, course_data, model


def fake_docs():
    text = ("# Heating\n\nIntro line. Second line!\n\n## Start\nStart the heater by 16:30. "
            "If it freezes, start it by 15:30 instead.\n\n- Item one.\n- Item two.")
    return pd.DataFrame([{"doc": "01_heat.md", "title": "Heating", "text": text}])


def test_split_sentences_cuts_before_capitals_only():
    assert compare.split_sentences("It is 1.5 bar. Check it! Really? yes. \"Quote\" ends.") == \
        ["It is 1.5 bar.", "Check it!", "Really? yes.", "\"Quote\" ends."]


def test_sentence_chunks_keep_the_prefix_and_every_sentence():
    chunks = compare.sentence_chunks(fake_docs())
    assert list(chunks.columns) == ["chunk_id", "doc", "title", "text"]
    assert chunks["chunk_id"].tolist() == list(range(len(chunks)))
    assert chunks["text"].tolist() == [
        "Heating\nIntro line.", "Heating\nSecond line!", "Heating - Start\nStart the heater by 16:30.",
        "Heating - Start\nIf it freezes, start it by 15:30 instead.", "Heating - Start\n- Item one.",
        "Heating - Start\n- Item two."]


def test_sentence_chunks_of_the_real_manual_hold_every_evidence():
    chunks = compare.sentence_chunks(course_data.load_manual())
    assert 300 <= len(chunks) <= 600
    bodies = " ".join(chunks["text"].str.split("\n", n=1).str[1])
    assert sum(e in bodies for e in course_data.load_qa()["evidence"]) >= 150  # a few evidences span two sentences


def test_few_shot_and_knn_messages_alternate_turns():
    examples = pd.DataFrame({"question": ["Q1?", "Q2?"], "answer": ["A1.", "A2."]})
    messages = compare.few_shot_messages("Q?", examples, "Be brief.")
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert messages[2]["content"] == "A1." and messages[-1]["content"] == "Q?"
    neighbours = pd.DataFrame({"text": ["dim the lamp"], "label": ["lights"]})
    knn = compare.knn_intent_messages("lamp off", neighbours, "Label it.")
    assert [m["content"] for m in knn] == ["Label it.", "dim the lamp", "lights", "lamp off"]


def test_passage_words_only_masks_every_other_token():
    import torch

    only = compare.PassageWordsOnly([{1, 3}, {0}], vocab_size=5)
    scores = only(None, torch.zeros(2, 5))
    assert torch.isinf(scores).sum() == 7
    assert scores[0, 1] == 0 and scores[0, 3] == 0 and scores[1, 0] == 0 and torch.isinf(scores[1, 1])


def test_passage_token_ids_cover_words_in_every_form():
    tokenizer = model.load_tokenizer()
    ids = compare.passage_token_ids(tokenizer, "Start the heater by 16:30.")
    for form in ("Start", " start", "heater", " Heater", " 16"):
        assert set(tokenizer(form, add_special_tokens=False)["input_ids"]) <= ids, form
    assert not set(tokenizer(" banana", add_special_tokens=False)["input_ids"]) <= ids


def test_generate_grounded_uses_only_passage_words():
    m, tokenizer = model.load_base_model()
    passage = "Start the heater by 16:30 when the forecast is below 8 degrees."
    conversation = [{"role": "system", "content": compare.GROUNDED_SYSTEM},
                    {"role": "user", "content": f"Passages:\n[1] {passage}\n\nQuestion: When do I start the heater?"}]
    reply = compare.generate_grounded(m, tokenizer, [conversation], [passage], max_new_tokens=12)[0]
    allowed = compare.passage_token_ids(tokenizer, passage)
    assert reply and set(tokenizer(reply, add_special_tokens=False)["input_ids"]) <= allowed | {tokenizer.eos_token_id}


def test_run_system_scores_and_times():
    row = compare.run_system("echo", lambda qs: [q.upper() for q in qs], ["by 16:30", "at noon"], [["16:30"], ["18"]])
    assert row["system"] == "echo" and row["n"] == 2 and row["accuracy"] == 0.5
    assert row["correct"] == [True, False] and row["answers"] == ["BY 16:30", "AT NOON"]
    assert row["seconds_per_answer"] >= 0


def test_costs():
    assert compare.cost_per_1000(3.6, usd_per_hour=1.0) == pytest.approx(1.0)
    assert compare.cost_per_1000(0.36) == pytest.approx(0.1 * compare.CPU_USD_PER_HOUR)  # 360 s = 0.1 h
    prompt = [[{"role": "user", "content": "hello"}]]
    short, longer = compare.api_cost_per_1000(prompt, ["hi"]), compare.api_cost_per_1000(prompt, ["hi " * 100])
    assert 0 < short < longer
    table = compare.results_table([{"system": "a", "accuracy": 0.5, "n": 2, "seconds_per_answer": 3.6}],
                                  api_costs={"a": 0.2})
    assert table.loc["a", "local_usd_per_1000"] == pytest.approx(compare.CPU_USD_PER_HOUR)
    assert table.loc["a", "api_usd_per_1000"] == 0.2


def test_change_fact_and_answers():
    docs = fake_docs()
    changed = compare.change_fact(docs, "16:30", "17:15")
    assert "17:15" in changed["text"][0] and "16:30" not in changed["text"][0] and "16:30" in docs["text"][0]
    with pytest.raises(ValueError, match="not in the manual"):
        compare.change_fact(docs, "99:99", "00:00")
    qa = pd.DataFrame([{"answer": "By 16:30.", "evidence": "by 16:30 when", "key": ["16:30", "below 8"]}])
    new = compare.change_answers(qa, "16:30", "17:15").iloc[0]
    assert new["answer"] == "By 17:15." and new["key"] == ["17:15", "below 8"] and qa["key"][0][0] == "16:30"


def test_agreement_counts_both_kinds_of_disagreement():
    result = compare.agreement([True, True, False, False], [True, False, True, False])
    assert result == {"n": 4, "agreement": 0.5, "scorer_too_strict": 1, "scorer_too_lenient": 1}


def test_error_reason_and_table():
    assert compare.error_reason("By 16:30.", ["16:30"]) == ""
    assert compare.error_reason("By 16:30.", ["16:30", "below 8"], retrieved_hit=True) == "part of the fact"
    assert compare.error_reason("At noon.", ["16:30"], retrieved_hit=False) == "retrieval missed the fact"
    assert compare.error_reason("At noon.", ["16:30"], retrieved_hit=True) == "misread the passages"
    assert compare.error_reason("At noon.", ["16:30"]) == "invented a fact"
    assert compare.error_reason("I don't know.", ["16:30"]) == "declined"
    qa = pd.DataFrame({"question": ["q1", "q2"], "key": [["a"], ["b"]]})
    rows = [{"system": "RAG", "answers": ["a", "x"], "correct": [True, False]},
            {"system": "base", "answers": ["y", "z"], "correct": [False, False]}]
    table = compare.error_table(qa, rows, hits={"RAG": [True, False]})
    assert table["system"].tolist() == ["RAG", "base", "base"]
    assert table["reason"].tolist() == ["retrieval missed the fact", "invented a fact", "invented a fact"]


def test_decision_guide_follows_the_numbers():
    manual = pd.DataFrame({"accuracy": [0.02, 0.6, 0.05, 0.5]}, index=["base", "RAG", "fine-tuned", "few-shot"])
    intents = pd.DataFrame({"accuracy": [0.1, 0.4, 0.9], "unparseable": [0.9, 0.1, 0.0]},
                           index=["base", "few-shot", "fine-tuned"])
    update = pd.DataFrame({"before": [1.0, 1.0], "after": [1.0, 0.0]}, index=["RAG", "fine-tuned"])
    guide = compare.decision_guide(manual, intents, update)
    assert guide["measured winner"].tolist() == ["RAG", "fine-tuned", "fine-tuned", "RAG"]
    assert "60%" in guide["evidence"].iloc[0] and "still old: fine-tuned" in guide["evidence"].iloc[3]
    manual.loc["fine-tuned", "accuracy"] = 0.9
    assert compare.decision_guide(manual, intents, update)["measured winner"].iloc[0] == "fine-tuned"
    assert compare.best(manual) == "fine-tuned"
    assert np.isclose(manual["accuracy"].max(), 0.9)


def test_fact_examples_and_knows():
    manual = " ".join(course_data.load_manual()["text"])
    assert manual.count(compare.FACT["old"]) == 1 and compare.FACT["new"] not in manual
    assert compare.FACT["old_key"] in compare.FACT["old"] and compare.FACT["new_key"] in compare.FACT["new"]
    examples = compare.fact_examples("At 04:30.", "Be brief.")
    assert len(examples) == len(compare.FACT_TRAIN)
    assert [m["role"] for m in examples[0]["messages"]] == ["system", "user", "assistant"]
    assert examples[-1]["messages"][-1]["content"] == "At 04:30."
    assert compare.FACT_PROBES[0] in compare.FACT_TRAIN and not set(compare.FACT_PROBES[1:]) & set(compare.FACT_TRAIN)
    assert compare.knows(["At 04:30 on Thursday", "at 03:00", "no idea"], "04:30") == pytest.approx(1 / 3)
    assert compare.knows([], "04:30") == 0.0


def test_best_breaks_a_tie_with_the_faster_system():
    table = pd.DataFrame({"accuracy": [0.5, 0.9, 0.9], "seconds_per_answer": [0.1, 0.6, 0.2]},
                         index=["base", "RAG", "fine-tuned"])
    assert compare.best(table) == "fine-tuned"
    assert compare.best(table.drop(columns="seconds_per_answer")) == "RAG"


def test_passage_spans_only_continues_a_quote():
    spans = compare.PassageSpansOnly([[[5, 6, 7], [6, 9]]], prompt_length=2, stop_ids={0})
    assert spans.allowed(0, []) == {5, 6, 7, 9}
    assert spans.allowed(0, [6]) == {7, 9}
    assert spans.allowed(0, [5, 6]) == {7}
    assert spans.allowed(0, [5, 7]) == set()


def test_quotable_adds_citations_and_dont_know():
    table = pd.DataFrame({"text": ["Heating - Start\nStart by 16:30.", "Garage\nThe remote."]})
    assert compare.quotable(table) == ["Start by 16:30.", "The remote."]
    assert compare.quotable(table, cite=True) == ["[1] Start by 16:30.", "[2] The remote."]
    assert compare.quotable(["Start by 16:30."], dont_know=True, cite=True) == ["[1] Start by 16:30.", compare.DONT_KNOW]


def test_generate_extractive_quotes_a_passage():
    llm, tok = model.load_base_model()
    question = "When do I start the heater?"
    passage = "Start the heater by 16:30 when it is cold."
    prompt = [rag_prompt(question, passage)]
    reply = compare.generate_extractive(llm, tok, prompt, [["[1] " + passage]], max_new_tokens=24)[0]
    assert reply and ("[1] " + passage).find(reply) >= 0


def rag_prompt(question, passage):
    from helpers import rag
    return rag.rag_messages(question, [passage], system=compare.QUOTE_SYSTEM)


def test_raft_examples_hold_gold_or_say_dont_know():
    from helpers import rag
    docs = course_data.load_manual()
    chunks = compare.sentence_chunks(docs)
    qa = course_data.load_qa("train").head(20)
    retriever = rag.Bm25Retriever(chunks)
    examples = compare.raft_examples(qa, retriever, k=3, no_gold_share=0.3, seed=0)
    assert 0 < len(examples) <= len(qa)
    dont_know = [e for e in examples if e["messages"][-1]["content"] == compare.DONT_KNOW]
    assert 0 < len(dont_know) < len(examples)
    for example in examples:
        user, target = example["messages"][1]["content"], example["messages"][2]["content"]
        assert user.count("\n[") >= 2 and "Question:" in user
        if target != compare.DONT_KNOW:
            number = int(target[1:target.index("]")])
            quote = target.split("] ", 1)[1].lstrip("- ")   # a section-less list item shows without its "- "
            assert f"[{number}]" in user and quote in user


def test_balanced_raft_examples_put_the_gold_passage_once_at_each_position():
    from helpers import rag
    chunks = compare.sentence_chunks(course_data.load_manual())
    qa = course_data.load_qa("train").head(12)
    examples = compare.raft_examples(qa, rag.Bm25Retriever(chunks), k=3, no_gold_share=0.0, balanced=True)
    targets = [e["messages"][-1]["content"] for e in examples]
    assert len(examples) % 3 == 0 and len(examples) >= 3 * 10
    assert compare.cited_positions(targets) == {f"[{n}]": len(examples) // 3 for n in (1, 2, 3)}
    for first, second in zip(examples[::3], examples[1::3]):   # the same question, the gold passage moved
        assert first["messages"][1]["content"] != second["messages"][1]["content"]
        assert first["messages"][2]["content"][4:] == second["messages"][2]["content"][4:]


def test_cited_positions_counts_the_opening_citation():
    assert compare.cited_positions(["[2] a", " [2] b", "[10] c", "I don't know.", "x [1]"]) == \
        {"[10]": 1, "[2]": 2, "other": 2}


def test_write_benchmark_has_the_columns(tmp_path):
    table = compare.results_table([{"system": "RAG", "accuracy": 0.6, "n": 2, "seconds_per_answer": 1.0}],
                                  {"RAG": 0.01})
    path = compare.write_benchmark(table, tmp_path / "r.csv", commit="abc")
    frame = pd.read_csv(path)
    assert list(frame.columns) == compare.BENCHMARK_COLUMNS
    assert frame.loc[0, "system"] == "RAG" and frame.loc[0, "commit"] == "abc"
