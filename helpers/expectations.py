"""What each notebook says you should see, per mode: the one table behind :func:`helpers.checks.expect`.

Each entry names the notebook, the claim in words, the kind of number (which fixes how it prints and which
values are possible at all), the range for each mode, and what a value outside the range means.

- ``cpu``: the range the notebook's prose states, checked by the strict claims run (``make claims``).
- ``ci``: tiny data and few steps, so results are weak, but every range must still be able to fail: a
  range, a direction (a difference above 0) or a shape. A range that spans every possible value (for
  example a share from 0% to 100%) is refused by the tests.
- ``gpu``: larger sizes; the ``cpu`` range unless given.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

INF = math.inf

# kind -> (the values possible at all, how a value prints)
KINDS = {
    "share": ((0.0, 1.0), lambda v: f"{v:.1%}"),
    "points": ((-1.0, 1.0), lambda v: f"{v * 100:+.1f} points"),
    "count": ((0.0, INF), lambda v: f"{v:,.0f}"),
    "number": ((-INF, INF), lambda v: f"{v:.3g}"),
    "positive": ((0.0, INF), lambda v: f"{v:.3g}"),
    "gap": ((0.0, INF), lambda v: f"{v:.1e}"),
    "ratio": ((0.0, INF), lambda v: f"{v:.2f}×"),
    "seconds": ((0.0, INF), lambda v: f"{v:.0f} s"),
    "gib": ((0.0, INF), lambda v: f"{v:.2f} GiB"),
    "usd": ((0.0, INF), lambda v: f"${v:,.2f}"),
}


@dataclass(frozen=True)
class Expectation:
    notebook: str
    claim: str
    kind: str
    ci: tuple
    cpu: tuple
    otherwise: str
    gpu: tuple | None = field(default=None)

    @property
    def domain(self) -> tuple[float, float]:
        return KINDS[self.kind][0]

    def range_for(self, mode: str) -> tuple[float, float]:
        chosen = {"ci": self.ci, "cpu": self.cpu, "gpu": self.gpu or self.cpu}[mode]
        return float(chosen[0]), float(chosen[1])

    def format(self, value: float) -> str:
        return "nan" if math.isnan(value) else KINDS[self.kind][1](value)

    def describe(self, low: float, high: float) -> str:
        lo_open, hi_open = low <= self.domain[0], high >= self.domain[1]
        if low == high:
            return f"expected exactly {self.format(low)}"
        if lo_open:
            return f"expected at most {self.format(high)}"
        if hi_open:
            return f"expected at least {self.format(low)}"
        return f"expected {self.format(low)} to {self.format(high)}"


def _e(notebook, claim, kind, *, ci, cpu, otherwise, gpu=None) -> Expectation:
    return Expectation(notebook, claim, kind, tuple(ci), tuple(cpu), otherwise, None if gpu is None else tuple(gpu))


# One section per notebook, in learning order. Keys are unique across the course.
_00_WHY: dict[str, Expectation] = {
}

_01_COLLECT: dict[str, Expectation] = {
}

_02_FORMAT: dict[str, Expectation] = {
}

_03_API: dict[str, Expectation] = {
}

_04_LORA: dict[str, Expectation] = {
    "base_accuracy": _e("04", "the base model's accuracy on the test requests", "share", ci=(0.0, 0.6),
                        cpu=(0.0, 0.2), otherwise="The base model should rarely answer with one of the six words; "
                        "a higher score means the test is easier than it should be, or the labels leaked."),
    "mask_differences": _e("04", "labels that differ between your mask and sft.encode_example", "count",
                           ci=(0, 0), cpu=(0, 0), otherwise="Both masks should train exactly the reply and its "
                           "<|im_end|>: compare the two tails to find the token where they part."),
    "lora_trainable_share": _e("04", "the share of the weights that LoRA trains", "share", ci=(0.01, 0.03),
                               cpu=(0.01, 0.03), otherwise="A rank-8 adapter on the seven projections trains about "
                               "1.8% of the weights: check r and the target modules."),
    "loop_loss_ratio": _e("04", "the hand-written loop's last loss against its first", "ratio", ci=(0.0, 0.9),
                          cpu=(0.0, 0.5), otherwise="The loss should fall quickly on this task; if it does not, "
                          "check that the optimizer got the LoRA parameters and that the labels mask the prompt."),
    "lora_accuracy": _e("04", "LoRA's accuracy on the held-out test requests", "share", ci=(0.17, 1.0),
                        cpu=(0.95, 1.0), otherwise="Fewer right answers usually mean too few steps or too small "
                        "a learning rate: check that the loss curve above fell and flattened."),
    "lora_gain_over_base": _e("04", "LoRA's accuracy minus the base model's", "points", ci=(0.0, 1.0),
                              cpu=(0.75, 1.0), otherwise="Fine-tuning should lift the accuracy far above the base "
                              "model's; a small gain means the adapter learned little."),
    "reload_logit_gap": _e("04", "largest logit difference, reloaded adapter against the trained model", "gap",
                           ci=(0.0, 1e-4), cpu=(0.0, 1e-4), otherwise="A reloaded adapter on the base it was "
                           "trained on is the same model; a difference means another base or another dtype."),
    "merge_logit_gap": _e("04", "largest logit difference, merged model against the adapter (fp32 base)", "gap",
                          ci=(0.0, 2e-3), cpu=(0.0, 2e-3), otherwise="Merging rounds each weight once; a larger "
                          "difference means the merge ran on a bf16 base, which cannot hold small updates."),
    "resume_loss_gap": _e("04", "largest training-loss difference, resumed run against the first run", "gap",
                          ci=(0.0, 1e-4), cpu=(0.0, 1e-4), otherwise="A resumed run restores the optimizer, "
                          "schedule, random state and data position; a gap means one of them was not restored."),
    "prompt_tuning_trainable": _e("04", "prompt tuning's trainable parameters (16 virtual tokens of 576)", "count",
                                  ci=(9216, 9216), cpu=(9216, 9216), otherwise="Prompt tuning trains only its "
                                  "virtual tokens: 16 x 576 numbers."),
    "ptuning_vs_lora_trainable": _e("04", "P-tuning's trainable parameters as a share of LoRA's", "ratio",
                                    ci=(0.01, 0.5), cpu=(0.01, 0.5), otherwise="P-tuning's prompt encoder is small "
                                    "next to a LoRA adapter on every layer."),
    "lora_vs_prompt_tuning_accuracy": _e("04", "LoRA's accuracy minus prompt tuning's, same budget", "points",
                                         ci=(-0.5, 1.0), cpu=(0.0, 1.0), otherwise="On a short budget LoRA should "
                                         "do at least as well as prompt tuning, which needs many more steps."),
    "full_vs_lora_memory": _e("04", "full fine-tuning's peak memory against LoRA's", "ratio", ci=(1.0, 5.0),
                              cpu=(1.0, 5.0), otherwise="Every trained weight carries a gradient and optimizer "
                              "state, so full fine-tuning should need more memory than LoRA."),
    "served_disagreements": _e("04", "served answers that differ from the notebook's own", "count", ci=(0, 1),
                               cpu=(0, 1), otherwise="The server runs the same adapter; more than a near-tie "
                               "flipping means it loaded another adapter or another base."),
    "ddp_loss_gap": _e("04", "largest loss difference, two processes against one", "gap", ci=(0.0, 1e-4),
                       cpu=(0.0, 1e-4), otherwise="Two processes should train what one does; a larger gap means "
                       "another batch order or a loss not scaled by the whole step's tokens."),
    "ddp_logit_gap": _e("04", "largest logit difference between the two adapters", "gap", ci=(0.0, 1e-2),
                        cpu=(0.0, 1e-2), otherwise="The adapters of one and two processes should compute the same "
                        "thing, up to rounding."),
}

_05_METRICS: dict[str, Expectation] = {
}

_06_RAG: dict[str, Expectation] = {
    "faiss_numpy_top5_differences": _e("06", "training questions whose top 5 differ between numpy and faiss", "count",
                                       ci=(0, 0), cpu=(0, 0), otherwise="Both indexes search the same unit vectors "
                                       "exactly; a difference means the vectors were not normalised or were added "
                                       "in another order."),
    "chunking_worst_recall_at_3": _e("06", "recall@3 of the weakest chunking", "share", ci=(0.85, 1.0),
                                     cpu=(0.85, 1.0), otherwise="Every chunking should put the answer in the top 3 "
                                     "for most questions; a lower value means the chunks lost their title line or "
                                     "the embedder changed."),
    "recall_at_1_120_words_minus_sentences": _e("06", "recall@1 of 120-word chunks minus one-sentence chunks",
                                                "points", ci=(0.0, 1.0), cpu=(0.0, 1.0), otherwise="A question "
                                                "often matches the sentence next to its answer, so one-sentence "
                                                "chunks should not beat 120-word chunks at rank 1."),
    "manual_rag_accuracy": _e("06", "RAG's accuracy on the manual's test questions", "share", ci=(0.15, 1.0),
                              cpu=(0.40, 1.0), otherwise="RAG should answer well over a third right; a lower value "
                              "usually means the retriever or the RAG setting chosen on training questions changed."),
    "manual_closed_book_best_accuracy": _e("06", "the best accuracy of base, few-shot and fine-tuned (no passages)",
                                           "share", ci=(0.0, 0.5), cpu=(0.0, 0.15), otherwise="Without passages the "
                                           "model has to invent the facts; a higher value means test facts leaked "
                                           "into the prompts or the training pairs."),
    "manual_rag_lead_over_the_rest": _e("06", "RAG's accuracy minus the best of the other four systems", "points",
                                        ci=(-0.6, 1.0), cpu=(0.0, 1.0), otherwise="RAG is the only system that "
                                        "sees the facts, so it should be first or tied; if another system leads, "
                                        "look at its answers in the error table."),
    "manual_ft_rag_minus_rag": _e("06", "fine-tuned + RAG's accuracy minus RAG's", "points", ci=(-1.0, 0.6),
                                  cpu=(-1.0, 0.0), otherwise="The closed-book adapter learned to answer short and "
                                  "from memory, so it should not read the passages better than the base model."),
    "manual_test_recall_at_1": _e("06", "how often the one passage RAG hands over holds the answer", "share",
                                  ci=(0.3, 1.0), cpu=(0.55, 1.0), otherwise="A lower recall means the search, not "
                                  "the reader, loses most answers: check the chunking and the embedder."),
    "manual_gold_reader_accuracy": _e("06", "the reader's accuracy when given the gold evidence sentence", "share",
                                      ci=(0.0, 0.75), cpu=(0.0, 0.95), otherwise="A 135M reader should still miss "
                                      "some answers with the right sentence in hand; a perfect score means the "
                                      "reader is not the weak link here."),
    "unanswerable_rag_declines": _e("06", "unanswerable questions that RAG declines", "share", ci=(0.0, 0.75),
                                    cpu=(0.0, 0.2), otherwise="An extractive reader can only decline with words "
                                    "its passage holds, so it should rarely decline; more declines mean the "
                                    "passages or the reader changed."),
    "hand_labelled_answers": _e("06", "answers judged by hand", "count", ci=(30, INF), cpu=(30, INF),
                                otherwise="data/manual/hand_labels.jsonl should hold 36 judged answers whose "
                                "questions are in the manual's question files."),
    "scorer_hand_label_agreement": _e("06", "how often the key-string scorer agrees with the hand labels", "share",
                                      ci=(0.85, 1.0), cpu=(0.85, 1.0), otherwise="A lower agreement means the "
                                      "scorer's rule or the question keys changed: read the disagreements above."),
    "base_errors_other_reason": _e("06", "the base model's wrong answers with a reason other than invented, partial "
                                   "or declined", "count", ci=(0, 0), cpu=(0, 0), otherwise="The base model sees no "
                                   "passage, so retrieval cannot miss for it: check how error_table was called."),
    "rag_errors_other_reason": _e("06", "RAG's wrong answers with a reason other than retrieval, reading, partial or "
                                  "declined", "count", ci=(0, 0), cpu=(0, 0), otherwise="RAG's errors should come "
                                  "from the search or the reader; another reason means the hit list was not passed "
                                  "to error_table."),
    "fact_rag_knows_new_time": _e("06", "probes where RAG gives the new update time after the re-index", "share",
                                  ci=(0.3, 1.0), cpu=(0.6, 1.0), otherwise="RAG reads the changed manual at once; a "
                                  "lower value means the re-indexed chunks do not hold the new time."),
    "fact_ft_knew_old_time": _e("06", "probes where the fact adapter gave the old update time", "share",
                                ci=(0.0, 0.9), cpu=(0.6, 1.0), otherwise="The adapter was trained many epochs on "
                                "this one fact; a lower value means it did not learn it (too few epochs or too "
                                "small a learning rate)."),
    "fact_ft_knows_new_time_unretrained": _e("06", "probes where the fact adapter gives the new time before "
                                             "retraining", "share", ci=(0.0, 0.0), cpu=(0.0, 0.0),
                                             otherwise="Weights do not change when the manual does; any right "
                                             "answer here means the new time reached the prompt."),
    "fact_ft_knows_new_time_retrained": _e("06", "probes where the retrained fact adapter gives the new time",
                                           "share", ci=(0.0, 0.9), cpu=(0.6, 1.0), otherwise="Retraining on the "
                                           "new answer should replace the old one; a lower value means the run was "
                                           "too short."),
    "intents_ft_accuracy": _e("06", "the fine-tuned intent classifier's accuracy", "share", ci=(0.15, 1.0),
                              cpu=(0.6, 1.0), otherwise="LoRA on 16 requests per label should learn the six labels; "
                              "a lower value means the run was too short or the replies are not parsed."),
    "intents_ft_minus_best_prompt": _e("06", "the fine-tuned classifier's accuracy minus the best prompt's",
                                       "points", ci=(-0.9, 1.0), cpu=(0.0, 1.0), otherwise="On a format task "
                                       "training should match or beat every prompt; if a prompt wins, compare "
                                       "the unparseable column."),
    "intents_ft_vs_knn_api_cost": _e("06", "the fine-tuned classifier's API cost against the nearest-neighbour "
                                     "prompt's", "ratio", ci=(0.0, 1.0), cpu=(0.0, 1.0), otherwise="The fine-tuned "
                                     "model's prompt holds no worked examples, so each call should cost less."),
    "intents_unparseable_base_minus_ft": _e("06", "the base model's unparseable replies minus the fine-tuned "
                                            "model's", "points", ci=(0.0, 1.0), cpu=(0.01, 1.0), otherwise="The "
                                            "base model often replies with a sentence that names no label; the "
                                            "adapter should have learned to reply with one word."),
}

_07_SHIP: dict[str, Expectation] = {
}

EXPECTATIONS: dict[str, Expectation] = {**_00_WHY, **_01_COLLECT, **_02_FORMAT, **_03_API, **_04_LORA, **_05_METRICS,
                                        **_06_RAG, **_07_SHIP}
