from helpers import course_data, evaluate, model


def test_parse_label_takes_the_first_label_word():
    labels = course_data.INTENT_LABELS
    assert evaluate.parse_label("Heating. Not lights.", labels) == "heating"
    assert evaluate.parse_label("I would say: LIGHTS", labels) == "lights"
    assert evaluate.parse_label("The answer is the heater", labels) is None


def test_answer_correct_needs_every_key():
    assert evaluate.answer_correct("Start it by 16:30 when it is cold.", ["16:30"])
    assert evaluate.answer_correct("In the KEY  drawer in the hallway", ["key drawer", "hallway"])
    assert not evaluate.answer_correct("In the key drawer", ["key drawer", "hallway"])


def test_accuracy():
    assert evaluate.accuracy(["a", "b", "c", "d"], ["a", "x", "c", None]) == 0.5


def test_base_model_is_poor_on_the_course_tasks():
    m, tok = model.load_base_model()
    intents = course_data.load_intents("test").groupby("label").head(2)
    predicted = evaluate.classify(m, tok, intents["text"].tolist())
    assert evaluate.accuracy(intents["label"], predicted) <= 0.5
    qa = course_data.load_qa("test").head(6)
    answers = evaluate.answer_questions(m, tok, qa["question"].tolist(), max_new_tokens=32)
    assert sum(evaluate.answer_correct(a, k) for a, k in zip(answers, qa["key"])) <= 2


def test_classify_in_bf16_runs_and_mostly_agrees_with_float32():
    m, tok = model.load_base_model()
    texts = ["Reply with the word lights.", "Reply with the word heating.", "Reply with the word media."]
    full = evaluate.classify(m, tok, texts)
    fast = evaluate.classify(m, tok, texts, bf16=True)
    assert len(fast) == 3 and sum(a == b for a, b in zip(full, fast)) >= 2
