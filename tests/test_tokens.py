import hashlib

import pytest

from helpers import tokens


def test_offline_encodings_match_tiktoken_hashes(tmp_path):
    folder = tokens.install_offline_encodings(tmp_path)
    for name, (url, expected, _) in tokens.ENCODINGS.items():
        data = (folder / hashlib.sha1(url.encode()).hexdigest()).read_bytes()
        assert hashlib.sha256(data).hexdigest() == expected


def test_plain_tiktoken_works_offline(tmp_path, monkeypatch):
    import tiktoken

    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    tokens.install_offline_encodings()
    enc = tiktoken.get_encoding("o200k_base")
    assert enc.decode(enc.encode("When do I have to start the heater?")) == "When do I have to start the heater?"
    assert enc.encode("hello world") == [24912, 2375]
    assert tiktoken.get_encoding("cl100k_base").encode("hello world") == [15339, 1917]


def test_a_corrupted_cache_file_is_rebuilt(tmp_path):
    folder = tokens.install_offline_encodings(tmp_path)
    url, expected, _ = tokens.ENCODINGS["cl100k_base"]
    path = folder / hashlib.sha1(url.encode()).hexdigest()
    path.write_bytes(b"garbage")
    tokens.install_offline_encodings(tmp_path)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == expected


def test_chat_token_count_follows_openai_rule():
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    enc = tokens.encoding_for("gpt-4o-mini")
    content = sum(len(enc.encode(m[k])) for m in messages for k in ("role", "content"))
    assert tokens.count_chat_tokens(messages) == 3 + 3 * len(messages) + content
    named = [{"role": "user", "content": "hi", "name": "ann"}]
    assert tokens.count_chat_tokens(named) == tokens.count_chat_tokens([{"role": "user", "content": "hi"}]) \
        + len(enc.encode("ann")) + 1


def test_model_families_use_their_encodings():
    assert tokens.encoding_for("gpt-4o-mini-2024-07-18").name == "o200k_base"
    assert tokens.encoding_for("gpt-3.5-turbo").name == "cl100k_base"
    assert tokens.encoding_for("ft:gpt-4.1-mini-2025-04-14:org::abc").name == "o200k_base"


@pytest.mark.parametrize("n, epochs", [(10, 10), (20, 5), (30, 3), (34, 3), (1000, 3), (8333, 3), (8334, 2),
                                       (10000, 2), (30000, 1), (1, 25)])
def test_default_epochs_rule(n, epochs):
    assert tokens.default_epochs(n) == epochs


def test_cost_estimate_uses_price_table_and_epochs():
    example = {"messages": [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi"}]}
    estimate = tokens.estimate_training_cost([example] * 50, "gpt-4o-mini-2024-07-18")
    per = tokens.count_chat_tokens(example["messages"], "gpt-4o-mini-2024-07-18")
    assert estimate.n_epochs == 3 and estimate.tokens_per_epoch == 50 * per
    assert estimate.billed_tokens == 3 * 50 * per
    price = tokens.load_prices()["models"]["gpt-4o-mini-2024-07-18"]["training"]
    assert estimate.usd == pytest.approx(estimate.billed_tokens * price / 1e6)
    assert "prices as of" in str(estimate)


def test_price_table_has_date_and_source():
    table = tokens.load_prices()
    assert table["as_of"] and table["source"].startswith("https://")
    assert all(set(p) == {"training", "input", "output"} for p in table["models"].values())


def test_unknown_model_price_is_a_clear_error():
    with pytest.raises(KeyError, match="Known models"):
        tokens.estimate_training_cost([{"messages": []}], "gpt-99")
