"""Tests for helpers.collect: inline HTML and a fake chat function, no model, no network."""
import pandas as pd
import pytest

from helpers.collect import (INTENT_KEYWORDS, POST_COLUMNS, generate_with_review, generation_prompt,
                             parse_generated, review, scrape_posts)
from helpers.environment import DATA_DIR

PAGE = """<!doctype html><html><head><title>Forum</title>
<script>var posts = '<article class="post">fake</article>';</script></head>
<body>
<nav><a href="/">Home</a> <article class="post"><h2 class="title">Menu</h2></article></nav>
<article class="post" data-topic="heating">
  <h2 class="title">Heater   starts late</h2>
  <span class="author">sam_k</span> <time datetime="2024-03-02T07:15">2 March</time>
  <div class="body"><p>The Hearth&nbsp;H2 starts at 6:30 &amp; the house is cold.</p><p>Any&nbsp;ideas?</p></div>
</article>
<article class="post" data-topic="lights">
  <h2 class="title">Glow bulbs &lt;flicker&gt;</h2>
  <span class="author">jo</span>
  <div class="body">They flicker<br>when <b>dimmed</b>  &#8212; why?</div>
</article>
<footer><article class="post"><h2 class="title">Footer</h2></article></footer>
</body></html>"""


# ---------------------------------------------------------------- scraping
def test_scrape_posts_ignores_noise_and_decodes_entities():
    posts = scrape_posts(PAGE)
    assert list(posts.columns) == POST_COLUMNS and len(posts) == 2
    first, second = posts.iloc[0], posts.iloc[1]
    assert first["title"] == "Heater starts late" and first["author"] == "sam_k"
    assert first["time"] == "2024-03-02T07:15" and first["topic"] == "heating"
    assert first["body"] == "The Hearth H2 starts at 6:30 & the house is cold. Any ideas?"
    assert second["title"] == "Glow bulbs <flicker>"
    assert second["body"] == "They flicker when dimmed \u2014 why?"
    assert pd.isna(second["time"])


def test_scrape_posts_reads_a_path(tmp_path):
    path = tmp_path / "page.html"
    path.write_text(PAGE, encoding="utf-8")
    assert len(scrape_posts(path)) == 2 and len(scrape_posts(str(path))) == 2


def test_scrape_posts_explains_missing_posts():
    with pytest.raises(ValueError, match=r"article\.post"):
        scrape_posts("<html><body><div class='post'>nope</div></body></html>")


def test_scrape_real_forum_if_present():
    path = DATA_DIR / "raw" / "support_forum.html"
    if not path.exists():
        pytest.skip("data/raw/support_forum.html not written yet")
    posts = scrape_posts(path)
    assert len(posts) > 0 and list(posts.columns) == POST_COLUMNS
    assert posts["body"].map(bool).all()


# ---------------------------------------------------------------- prompt, parse, review
def test_generation_prompt_with_and_without_feedback():
    messages = generation_prompt("lights", ["Dim the hall lamp", "Lights off please"], n=3)
    assert [m["role"] for m in messages] == ["system", "user"]
    user = messages[-1]["content"]
    assert "3 new requests" in user and '"lights"' in user and "- Dim the hall lamp" in user
    assert "Avoid these problems" not in user
    with_feedback = generation_prompt("lights", ["Dim the hall lamp"], feedback=["too short: \"Lights\""])
    assert "Avoid these problems:\n- too short: \"Lights\"" in with_feedback[-1]["content"]


def test_parse_generated_strips_numbering_bullets_and_quotes():
    reply = 'Here are three requests:\n1. "Turn the porch light on"\n\n- Dim the lamp\n2) \u201cBulbs off\u201d\n* ok'
    assert parse_generated(reply) == ["Turn the porch light on", "Dim the lamp", "Bulbs off", "ok"]


def test_review_rules():
    existing = ["Turn on the kitchen lights"]
    candidates = ["Lights on",                                   # too short
                  "light " * 31,                                 # too long
                  "turn on the kitchen lights.",                 # duplicate of existing
                  "Turn on the kitchen light",                   # near duplicate
                  "Please dim the bedroom lamp to half",         # fine
                  "Please dim the bedroom lamp to half",         # duplicate of an earlier candidate
                  "What is the weather like tomorrow?",          # no keyword
                  "Set the thermostat to 20 degrees"]            # another label's keyword only
    accepted, problems = review(candidates, "lights", existing, INTENT_KEYWORDS)
    assert accepted == ["Please dim the bedroom lamp to half"]
    reasons = [reason for _, reason in problems]
    assert reasons == ["too short (fewer than 3 words)", "too long (more than 30 words)",
                       "duplicate of an existing example", "near duplicate of an existing example",
                       "duplicate of an existing example", "off-topic: mentions no lights keyword",
                       "about heating, not lights"]


def test_intent_keywords_cover_six_labels():
    assert set(INTENT_KEYWORDS) == {"lights", "heating", "security", "media", "appliances", "energy"}


# ---------------------------------------------------------------- the loop
SEEDS = {"lights": ["Turn on the kitchen lights", "Dim the lounge lamp"],
         "heating": ["Make the house warmer"]}
ROUND_1 = """1. Switch on the porch light at sunset
2. Turn on the kitchen lights
3. Lights
4. What's the weather tomorrow?
5. Brighten the hall bulbs a little"""
ROUND_2 = """1. Set the bedroom lamp to a warm glow
2. Turn off every light downstairs at ten
3. Dim the landing lights to 30 percent"""


class FakeChat:
    """Deterministic stand-in for a model: replies by call number and records the prompts."""

    def __init__(self, replies):
        self.replies, self.calls = replies, []

    def __call__(self, messages):
        self.calls.append(messages)
        return self.replies[len(self.calls) - 1]


def test_generate_with_review_feeds_problems_back():
    chat = FakeChat([ROUND_1, ROUND_2])
    accepted, problems = generate_with_review(chat, ["lights"], SEEDS, rounds=2, per_round=5)
    assert list(accepted.columns) == ["text", "label", "round"]
    assert list(problems.columns) == ["text", "label", "round", "reason"]
    assert accepted.groupby("round").size().to_dict() == {1: 2, 2: 3}
    assert set(accepted["label"]) == {"lights"}
    assert problems["round"].tolist() == [1, 1, 1]
    assert problems["reason"].tolist() == ["duplicate of an existing example",
                                           "too short (fewer than 3 words)",
                                           "off-topic: mentions no lights keyword"]
    first, second = chat.calls[0][-1]["content"], chat.calls[1][-1]["content"]
    assert "Avoid these problems" not in first
    assert "Avoid these problems" in second
    for _, row in problems.iterrows():                     # every round-1 problem reaches round 2
        assert row["reason"] in second and row["text"] in second


def test_generate_with_review_per_label_and_dataframe_seeds():
    chat = FakeChat(["Dim the hall lamp please", "Raise the heating to 21 degrees"])
    seeds = pd.DataFrame({"text": ["Lights off please", "Make the house warmer"],
                          "label": ["lights", "heating"]})
    accepted, problems = generate_with_review(chat, ["lights", "heating"], seeds, rounds=1)
    assert accepted[["label", "round"]].values.tolist() == [["lights", 1], ["heating", 1]]
    assert problems.empty and len(chat.calls) == 2
    assert '"heating"' in chat.calls[1][-1]["content"]
