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
    "legacy_round_trip_changes": _e("02", "chat examples changed by the trip chat -> legacy -> chat", "count",
                                    ci=(0, 0), cpu=(0, 0), otherwise="chat_to_legacy and legacy_to_chat should "
                                    "undo each other: compare the two examples to see which part changed."),
    "spaced_label_and_stop_tokens": _e("02", "tokens in ' heating END' (cl100k_base)", "count", ci=(2, 2),
                                       cpu=(2, 2), otherwise="With a leading space the label and the stop sequence "
                                       "should be one token each; more means another encoding was loaded."),
    "bare_label_pieces": _e("02", "pieces of 'heating' without its leading space (cl100k_base)", "count",
                            ci=(2, 2), cpu=(2, 2), otherwise="Without the space the word should break into two "
                            "pieces; another number means another encoding was loaded."),
    "alpaca_round_trip_changes": _e("02", "conversations changed by the trip chat -> Alpaca -> chat", "count",
                                    ci=(0, 0), cpu=(0, 0), otherwise="Fields may move, but every turn should come "
                                    "back unchanged: print a changed conversation to see which turn differs."),
    "multi_token_label_cells": _e("02", "label and tokenizer pairs where a spaced label is more than one token",
                                  "count", ci=(0, 0), cpu=(0, 0), otherwise="Every intent label should be a single "
                                  "token after a space; a longer one needs a new name or a check on whole labels."),
    "shared_first_tokens": _e("02", "labels whose first token (without a space) another label shares", "count",
                              ci=(0, 0), cpu=(0, 0), otherwise="A shared first token means one generated token no "
                              "longer decides the class: rename one of the two labels."),
    "climate_control_two_token_tokenizers": _e("02", "tokenizers that cut 'Climate control' into 2 tokens (of 3)",
                                               "count", ci=(3, 3), cpu=(3, 3), otherwise="The name should take two "
                                               "tokens under all three tokenizers; check the encoders dictionary."),
    "mapped_single_token_labels": _e("02", "different single-token labels that single_token_labels chose (of 6)",
                                     "count", ci=(6, 6), cpu=(6, 6), otherwise="Each class name should map to its "
                                     "own single-token label; fewer means two classes share one or one is longer."),
    "planted_defects_mismatch": _e("02", "planted defects missed plus findings not planted", "count", ci=(0, 0),
                                   cpu=(0, 0), otherwise="The validator should report exactly the defects that "
                                   "data/broken/README.md lists: the two sets printed above show which differ."),
    "prepared_format_errors": _e("02", "errors left in the prepared files, other than too few examples", "count",
                                 ci=(0, 0), cpu=(0, 0), otherwise="Every example that still has an error should "
                                 "be dropped; an error left means a fix wrote a defect of its own."),
    "prepare_second_pass_changes": _e("02", "changes made by preparing the prepared files again", "count",
                                      ci=(0, 0), cpu=(0, 0), otherwise="A prepared file needs no more repair; a "
                                      "change on the second pass means one fix undoes or redoes another."),
    "clean_file_findings": _e("02", "findings in the course's intent training file", "count", ci=(0, 0),
                              cpu=(0, 0), otherwise="The shipped intent data is clean; a finding means the file "
                              "was changed or written from other data."),
    "system_message_token_share": _e("02", "share of the intent training tokens in the repeated system message",
                                     "share", ci=(0.4, 0.7), cpu=(0.4, 0.7), otherwise="Roughly half the tokens "
                                     "should be the system message; another share means another system message or "
                                     "other requests."),
    "auto_epochs_30_examples": _e("02", "epochs the auto rule gives 30 examples", "count", ci=(3, 3), cpu=(3, 3),
                                  otherwise="The rule divides whole numbers: 100 // 30 = 3, so 30 examples keep the "
                                  "target of 3 epochs."),
    "auto_epochs_intent_file": _e("02", "epochs the auto rule gives the 480 intent training examples", "count",
                                  ci=(3, 3), cpu=(3, 3), otherwise="480 examples x 3 epochs is within 100 to "
                                  "25,000 example-passes, so the rule keeps 3."),
    "intent_cost_gpt4o_mini": _e("02", "estimated cost of training gpt-4o-mini on the intent file", "usd",
                                 ci=(0.1, 0.5), cpu=(0.1, 0.5), otherwise="About a quarter of a dollar is expected; "
                                 "another figure means the price table or the token count changed."),
    "intent_cost_dearest": _e("02", "the dearest model's estimate for the intent file", "usd", ci=(0.0, 5.0),
                              cpu=(0.0, 5.0), otherwise="The intent file is small, so no model should cost more than "
                              "a few dollars; check data/openai_prices.json."),
    "random_split_leaks": _e("02", "raw requests that a random 80/20 split puts on both sides", "count",
                             ci=(1, INF), cpu=(1, INF), otherwise="The raw requests contain near-copies, so a random "
                             "split should leak some; none means the raw file has already been cleaned."),
    "fixed_split_shared_requests": _e("02", "requests shared between the fixed intent splits", "count", ci=(0, 0),
                                      cpu=(0, 0), otherwise="The fixed splits should share no request: a shared "
                                      "one inflates every test score in the course."),
    "catch_up_findings": _e("02", "errors and warnings in the catch-up files", "count", ci=(0, 0), cpu=(0, 0),
                            otherwise="Every file written here should validate clean; the table above shows which "
                            "file has a finding."),
}

_03_API: dict[str, Expectation] = {
    "intent_job_billed_tokens": _e("03", "billed tokens the intent job would cost on OpenAI", "count",
                                   ci=(1_000, 5_000), cpu=(10_000, 30_000), otherwise="The estimate is the "
                                   "file's tokens times the epochs; another size means another subset or other "
                                   "epochs than this notebook sets."),
    "intent_job_cost": _e("03", "the intent job's estimated cost on OpenAI", "usd", ci=(0.0, 0.1),
                          cpu=(0.0, 0.1), otherwise="A few thousand tokens cost well under ten cents; more means "
                          "a larger file, more epochs or another price table."),
    "five_example_job_failed": _e("03", "jobs on the 5-example file that ended as failed (of 1)", "count",
                                  ci=(1, 1), cpu=(1, 1), otherwise="The service should reject a file under 10 "
                                  "examples once the job starts; a job that trained means the check is missing."),
    "api_valid_loss_drop": _e("03", "full validation loss after epoch 1 minus at the end", "number",
                              ci=(0.0, INF), cpu=(0.0, INF), otherwise="The validation loss should fall from the "
                              "first checkpoint to the last; a rise means the later epochs made the model worse."),
    "api_valid_token_accuracy": _e("03", "last token accuracy on the validation batch", "share", ci=(0.5, 1.0),
                                   cpu=(0.5, 1.0), otherwise="The job should have learned to write the label; a "
                                   "low token accuracy means too few steps or too small a learning rate."),
    "api_base_accuracy": _e("03", "the base model's accuracy on the test requests, through the server", "share",
                            ci=(0.0, 0.3), cpu=(0.0, 0.2), otherwise="The base model rarely answers with a label; "
                            "a higher score means the test is too easy or the labels leaked into the prompt."),
    "api_fine_tuned_accuracy": _e("03", "the fine-tuned model's accuracy on the test requests", "share",
                                  ci=(0.17, 1.0), cpu=(0.8, 1.0), otherwise="Fewer right answers mean the job "
                                  "trained too little: check the losses and the hyperparameters above."),
    "api_gain_over_base": _e("03", "the fine-tuned model's accuracy minus the base model's", "points",
                             ci=(0.0, 1.0), cpu=(0.5, 1.0), otherwise="Fine-tuning should lift the accuracy far "
                             "above the base model's; a small gain means the job learned little."),
    "api_gap_over_undertrained": _e("03", "the first job's accuracy minus the under-trained job's", "points",
                                    ci=(-0.1, 1.0), cpu=(0.2, 1.0), otherwise="One epoch at a tenth of the "
                                    "learning rate should leave the model far behind; a small gap means the task "
                                    "is learned in very few steps."),
    "api_auto_n_epochs": _e("03", "the epochs that \"auto\" resolved to", "count", ci=(4, 4), cpu=(3, 3),
                            otherwise="The server follows OpenAI's rule: 100 // 24 = 4 epochs for 24 examples, "
                            "3 for 96; another number means the rule or the file differs."),
    "api_models_listed_wrongly": _e("03", "models listed wrongly after the delete", "count", ci=(0, 0),
                                    cpu=(0, 0), otherwise="The deleted model should be gone and the first one "
                                    "still listed; the line above says which is wrong."),
    "ar_lsat_majority_accuracy": _e("03", "AR-LSAT validation accuracy of always the most common letter",
                                    "share", ci=(0.15, 0.3), cpu=(0.15, 0.3), otherwise="With five balanced "
                                    "options, guessing scores about 20%; far from it means the letters are not "
                                    "balanced or another split was loaded."),
    "ar_lsat_long_share": _e("03", "share of AR-LSAT training examples longer than 256 SmolLM2 tokens", "share",
                             ci=(0.2, 0.7), cpu=(0.2, 0.7), otherwise="Roughly 40% of the puzzles are that long; "
                             "another share means another tokenizer or another data version."),
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
}

_07_SHIP: dict[str, Expectation] = {
}

EXPECTATIONS: dict[str, Expectation] = {**_00_WHY, **_01_COLLECT, **_02_FORMAT, **_03_API, **_04_LORA, **_05_METRICS,
                                        **_06_RAG, **_07_SHIP}
