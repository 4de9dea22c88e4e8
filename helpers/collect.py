"""Collecting training data: scrape a web page, and generate examples with a model plus a review loop.

Scraping::

    posts = scrape_posts(DATA_DIR / "raw" / "support_forum.html")

Generating with review. ``chat_fn`` is any callable that takes chat messages
(``[{"role": ..., "content": ...}]``) and returns the reply text: the course passes one that calls
the local base model or an OpenAI client, the tests pass a fake::

    accepted, problems = generate_with_review(chat_fn, ["lights", "heating"], seeds, rounds=2)

Each round the model writes candidates, :func:`review` checks them with simple rules, and the
problems it found go back into the next round's prompt ("Avoid these problems: ...").
"""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
from bs4 import BeautifulSoup
from rapidfuzz import fuzz

from helpers.clean import normalise

# ---------------------------------------------------------------- scraping
POST_SELECTOR = "article.post"
NOISE_TAGS = ["script", "style", "nav", "footer", "header", "noscript"]
POST_COLUMNS = ["title", "author", "time", "topic", "body"]


def _read_html(html_or_path) -> str:
    """Accept HTML text, or a path (``str`` or ``Path``) to an HTML file."""
    if isinstance(html_or_path, Path):
        return html_or_path.read_text(encoding="utf-8")
    if "<" in html_or_path:
        return html_or_path
    if not Path(html_or_path).is_file():
        raise FileNotFoundError(f"{html_or_path!r} is neither HTML nor an existing file.")
    return Path(html_or_path).read_text(encoding="utf-8")


def _text(tag) -> str | None:
    """A tag's text with whitespace collapsed (entities are already decoded by the parser)."""
    return None if tag is None else " ".join(tag.get_text().split())


def scrape_posts(html_or_path) -> pd.DataFrame:
    """One row per ``<article class="post">``: title, author, time, topic, body.

    Uses BeautifulSoup with the standard library's ``html.parser``. Navigation, footers and
    scripts are removed first, so posts (or text) inside them never count. A missing field is NA.
    """
    soup = BeautifulSoup(_read_html(html_or_path), "html.parser")
    for tag in soup.find_all(NOISE_TAGS):
        tag.decompose()
    articles = soup.select(POST_SELECTOR)
    if not articles:
        raise ValueError(f"No posts found: expected <article class=\"post\"> elements "
                         f"(CSS selector {POST_SELECTOR!r}). Is this the right page?")
    rows = []
    for article in articles:
        body = article.select_one("div.body")
        if body is not None:                       # keep words apart across <p>, <li> and <br>
            for br in body.find_all("br"):
                br.replace_with(" ")
            for block in body.find_all(["p", "li", "div"]):
                block.insert_after(" ")
        stamp = article.select_one("time[datetime]")
        rows.append({"title": _text(article.select_one("h2.title")),
                     "author": _text(article.select_one("span.author")),
                     "time": stamp["datetime"] if stamp else None,
                     "topic": article.get("data-topic"),
                     "body": _text(body)})
    return pd.DataFrame(rows, columns=POST_COLUMNS)


# ---------------------------------------------------------------- generating with review
# Word starts ("light" also matches "lights"). Rough on purpose: about 95% of data/intents/train.jsonl
# passes review; the misses (e.g. "Bring the spare bedroom up to 20") show what keyword rules cannot see.
INTENT_KEYWORDS = {
    "lights": ["light", "lamp", "bulb", "dim", "bright", "glow", "lantern", "scene", "candle", "nightlight"],
    "heating": ["heat", "thermostat", "temperature", "warm", "radiator", "hearth", "cold", "degrees",
                "hot", "freezing", "chilly"],
    "security": ["lock", "unlock", "door", "alarm", "camera", "sentry", "garage", "security", "window",
                 "gate", "arm", "smoke", "carbon monoxide", "intruder"],
    "media": ["tv", "telly", "television", "music", "speaker", "volume", "play", "song", "radio", "film",
              "podcast", "subtitle", "audio", "episode", "channel", "cartoon", "loud", "shuffle"],
    "appliances": ["oven", "dishwasher", "wash", "fridge", "freezer", "kettle", "dry", "vacuum",
                   "appliance", "coffee", "blind", "rinse", "laundry", "robot"],
    "energy": ["energy", "solar", "panel", "battery", "usage", "kwh", "kilowatt", "bill", "power", "meter",
               "electricity", "charg", "export", "tariff", "grid", "rate", "peak"],
}
MIN_WORDS, MAX_WORDS, NEAR_DUPLICATE = 3, 30, 90
_NUMBERING = re.compile(r"^\s*(?:\d+\s*[.):]|[-*\u2022])\s*")
_QUOTES = "\"'\u201c\u201d\u2018\u2019`"


def generation_prompt(label: str, examples, n: int = 5, feedback=None) -> list[dict]:
    """Chat messages asking for ``n`` new user requests with intent ``label``, one per line.

    Shows up to five seed ``examples``; ``feedback`` (problems from the last round) is added as
    "Avoid these problems: ...".
    """
    shown = "\n".join(f"- {example}" for example in list(examples)[:5])
    ask = (f"Write {n} new requests that a customer might send to the Larkspur Living smart-home "
           f"assistant, all with the intent \"{label}\". Vary the wording and the details. "
           f"Write one request per line, with no numbering and nothing else.\n\n"
           f"Examples of \"{label}\" requests:\n{shown}")
    if feedback:
        ask += "\n\nAvoid these problems:\n" + "\n".join(f"- {problem}" for problem in feedback)
    return [{"role": "system", "content": "You write realistic, varied, family-friendly training data."},
            {"role": "user", "content": ask}]


def parse_generated(text: str) -> list[str]:
    """Split a reply into candidate lines: numbering, bullets and quotes stripped, empties dropped.

    Lines ending in a colon ("Here are five requests:") are preambles, not candidates.
    """
    candidates = []
    for line in text.splitlines():
        line = line.strip().strip(_QUOTES).strip()  # quotes first: "1. ..." keeps no number
        line = _NUMBERING.sub("", line).strip().strip(_QUOTES).strip()
        if line and not line.endswith(":"):
            candidates.append(line)
    return candidates


def _mentions(text: str, keywords) -> bool:
    """Does ``text`` contain a word starting with one of ``keywords`` (case-insensitive)?"""
    return any(re.search(rf"(?<!\w){re.escape(keyword)}", text, flags=re.IGNORECASE) for keyword in keywords)


def _key(text: str) -> str:
    return normalise(text).casefold().rstrip(".!?")


def review(candidates, label: str, existing_texts, keyword_map=None):
    """Rules-based review. Returns ``(accepted, problems)``; each problem is ``(candidate, reason)``.

    Rules, first failure wins: length (3 to 30 words), exact duplicate and near duplicate
    (rapidfuzz ratio >= 90) of an existing text or an accepted candidate, and topic: the candidate
    must mention a keyword of ``label`` (``keyword_map``, default :data:`INTENT_KEYWORDS`).
    """
    keyword_map = INTENT_KEYWORDS if keyword_map is None else keyword_map
    seen = [_key(text) for text in existing_texts]
    seen_set = set(seen)
    accepted, problems = [], []
    for candidate in candidates:
        key, words = _key(candidate), len(candidate.split())
        others = [other for other, keywords in keyword_map.items()
                  if other != label and _mentions(candidate, keywords)]
        if words < MIN_WORDS:
            reason = f"too short (fewer than {MIN_WORDS} words)"
        elif words > MAX_WORDS:
            reason = f"too long (more than {MAX_WORDS} words)"
        elif key in seen_set:
            reason = "duplicate of an existing example"
        elif any(fuzz.ratio(key, old) >= NEAR_DUPLICATE for old in seen):
            reason = "near duplicate of an existing example"
        elif not _mentions(candidate, keyword_map.get(label, [])):
            reason = (f"about {', '.join(others)}, not {label}" if others
                      else f"off-topic: mentions no {label} keyword")
        else:
            accepted.append(candidate)
            seen.append(key)
            seen_set.add(key)
            continue
        problems.append((candidate, reason))
    return accepted, problems


def _feedback(problems, limit: int = 8) -> list[str]:
    """Turn ``(candidate, reason)`` pairs into short lines for the next prompt."""
    lines = [f"{reason}: \"{candidate}\"" for candidate, reason in problems]
    return list(dict.fromkeys(lines))[:limit]


def generate_with_review(chat_fn, labels, seed_examples, rounds: int = 2, per_round: int = 5,
                         keyword_map=None):
    """Generate, review and feed back, ``rounds`` times per label.

    ``seed_examples`` maps label -> list of example texts (or is a DataFrame with ``text`` and
    ``label``). Returns ``(accepted_df, problems_df)`` with columns text, label, round and
    text, label, round, reason. Seeds and everything accepted so far count as existing texts.
    """
    if isinstance(seed_examples, pd.DataFrame):
        seed_examples = seed_examples.groupby("label")["text"].apply(list).to_dict()
    existing = [text for texts in seed_examples.values() for text in texts]
    accepted_rows, problem_rows = [], []
    for label in labels:
        feedback = None
        for round_no in range(1, rounds + 1):
            messages = generation_prompt(label, seed_examples.get(label, []), per_round, feedback)
            candidates = parse_generated(chat_fn(messages))
            accepted, problems = review(candidates, label, existing, keyword_map)
            existing.extend(accepted)
            accepted_rows += [{"text": text, "label": label, "round": round_no} for text in accepted]
            problem_rows += [{"text": text, "label": label, "round": round_no, "reason": reason}
                             for text, reason in problems]
            feedback = _feedback(problems) or None
    return (pd.DataFrame(accepted_rows, columns=["text", "label", "round"]),
            pd.DataFrame(problem_rows, columns=["text", "label", "round", "reason"]))
