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
    "why_line_slope": _e("00", "the learned slope a (the rule's is 3)", "number", ci=(2.85, 3.15), cpu=(2.85, 3.15),
                         otherwise="After 100 steps at a learning rate of 0.1 the line should sit on the rule; a slope "
                         "far from 3 means too few steps, too small a learning rate, or a wrong gradient."),
    "why_line_intercept": _e("00", "the learned intercept b (the rule's is 2)", "number", ci=(1.95, 2.05),
                             cpu=(1.95, 2.05), otherwise="The intercept should land within a few hundredths of 2; "
                             "further away, the fit has not converged yet."),
    "why_line_final_loss": _e("00", "the loss after 100 steps", "positive", ci=(0.0, 0.02), cpu=(0.0, 0.02),
                              otherwise="The noise in the data leaves a loss of about 0.01 even for the true rule; "
                              "a higher loss means the line has not reached the rule yet."),
    "why_pretrained_gain_related": _e("00", "the loss from zero against the loss from the pretrained start, related "
                                      "task", "ratio", ci=(10.0, INF), cpu=(10.0, INF), otherwise="A start close to "
                                      "the new rule should end far lower after 10 steps; a smaller advantage means "
                                      "the pretrained a and b are not close to the new task."),
    "why_pretrained_gain_unrelated_vs_related": _e("00", "the pretrained start's advantage on the unrelated task, "
                                                   "relative to its advantage on the related one", "ratio",
                                                   ci=(0.0, 1.0), cpu=(0.0, 1.0), otherwise="A head start helps "
                                                   "most when the new task is close to the old one; a larger value "
                                                   "means the unrelated task is closer to the old rule than it looks."),
    "why_base_qa_accuracy": _e("00", "the base model's accuracy on the manual questions", "share", ci=(0.0, 0.2),
                               cpu=(0.0, 0.2), otherwise="The base model has never seen the Larkspur manual; more "
                               "right answers mean the questions give their answers away, or the scoring is too loose."),
    "why_base_intent_accuracy": _e("00", "the base model's intent accuracy", "share", ci=(0.0, 0.4),
                                   cpu=(0.05, 0.4), otherwise="Without training the base model rarely answers with "
                                   "a label; a much higher score means the labels leaked into the prompt, a score under 5% "
                                   "that almost no reply names a label (see the share printed above)."),
}

_01_COLLECT: dict[str, Expectation] = {
    "collect_snips_utterances": _e("01", "SNIPS training utterances", "count", ci=(13_000, 15_000),
                                   cpu=(13_000, 15_000), otherwise="SNIPS's training split holds about 14,000 "
                                   "utterances; another count means another file or a partial download."),
    "collect_snips_intents": _e("01", "SNIPS intents", "count", ci=(7, 7), cpu=(7, 7), otherwise="SNIPS has "
                                "seven intents; another number means the intent column was read wrongly."),
    "collect_snips_class_ratio": _e("01", "SNIPS's largest class against its smallest", "ratio", ci=(1.0, 1.1),
                                    cpu=(1.0, 1.1), otherwise="SNIPS is balanced, within a few percent; a larger "
                                    "ratio means some rows are missing."),
    "collect_ar_lsat_rarest_letter": _e("01", "the share of AR-LSAT puzzles whose answer is the rarest letter",
                                        "share", ci=(0.17, 0.2), cpu=(0.17, 0.2), otherwise="The correct letters "
                                        "are spread evenly; a rarer letter means the split is skewed, so "
                                        "guessing is no longer 20%."),
    "collect_ar_lsat_commonest_letter": _e("01", "the share of AR-LSAT puzzles whose answer is the commonest "
                                           "letter", "share", ci=(0.2, 0.23), cpu=(0.2, 0.23), otherwise="A model "
                                           "that always answers this letter would beat chance by this much; more "
                                           "than 23% means the split is skewed."),
    "collect_clutter_in_posts": _e("01", "clutter phrases found in the scraped posts", "count", ci=(0, 0),
                                   cpu=(0, 0), otherwise="Banners, sidebars, scripts and the like must not "
                                   "reach the posts: check which tags scrape_posts removes first."),
    "collect_chat_calls_per_intent": _e("01", "chat calls per intent (two rounds)", "count", ci=(2, 2), cpu=(2, 2),
                                        otherwise="The loop makes one call per intent and round; another number "
                                        "means a round was skipped or repeated."),
    "collect_generated_candidates": _e("01", "candidate lines the model wrote", "count", ci=(1, INF), cpu=(1, INF),
                                       otherwise="No candidate at all means the replies could not be split into "
                                       "lines: print calls[0][1] to see what the model wrote."),
    "collect_empty_dropped": _e("01", "empty texts dropped", "count", ci=(3, 3), cpu=(3, 3), otherwise="The "
                                "datasheet counts 3 empty texts; another number means the empty step misses or "
                                "over-matches."),
    "collect_offensive_dropped": _e("01", "rude rows dropped", "count", ci=(5, 5), cpu=(5, 5), otherwise="The "
                                    "datasheet counts 5 rude rows; another number means the blocklist or its "
                                    "whole-word matching changed."),
    "collect_duplicates_dropped": _e("01", "duplicate copies dropped", "count", ci=(25, 25), cpu=(25, 25),
                                     otherwise="The datasheet counts 15 exact and 10 near copies; fewer means the "
                                     "threshold misses copies, more that it merges different requests."),
    "collect_pii_rows_scrubbed": _e("01", "rows with personal data scrubbed", "count", ci=(10, 12), cpu=(10, 12),
                                    otherwise="The datasheet counts 12 rows with personal data and the regexes "
                                    "miss one or two; fewer means a pattern broke, more that it flags innocent text."),
    "collect_clean_rows": _e("01", "rows left after cleaning", "count", ci=(167, 167), cpu=(167, 167),
                             otherwise="172 unique texts minus the 5 rude ones leave 167; another number means a "
                             "step dropped too much or too little."),
    "collect_rows_unaccounted": _e("01", "raw rows neither kept nor logged as dropped", "count", ci=(0, 0),
                                   cpu=(0, 0), otherwise="Every raw row should be kept or logged as dropped; a "
                                   "missing row was lost silently."),
    "collect_balance_cleaned": _e("01", "largest class against the smallest after cleaning", "ratio", ci=(5.0, 9.0),
                                  cpu=(5.0, 9.0), otherwise="heating is about seven times as common as energy in "
                                  "the cleaned requests; another ratio means rows of one class went missing."),
    "collect_balance_rebalanced": _e("01", "largest class against the smallest after rebalancing", "ratio",
                                     ci=(1.0, 2.5), cpu=(1.0, 2.5), otherwise="Downsampling to 20 per class should "
                                     "bring every class within 2.5 times the smallest; more means rebalance kept "
                                     "too many rows."),
    "collect_saved_rows_missing": _e("01", "the difference between the rows in the file and the cleaned rows",
                                     "count", ci=(0, 0), cpu=(0, 0), otherwise="The file should hold every cleaned "
                                     "request; a difference means the write or the read lost lines."),
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

_05_CHOOSE: dict[str, Expectation] = {
    "choose_encoder_before": _e("05", "the encoder's accuracy with its new, untrained head", "share", ci=(0.0, 0.6),
                                cpu=(0.02, 0.4), otherwise="A head with random weights should be right about one time "
                                "in six; far more means the head was not new, or the test is too easy."),
    "choose_encoder_after": _e("05", "the encoder's accuracy after fine-tuning", "share", ci=(0.1, 1.0),
                               cpu=(0.85, 1.0), otherwise="A few dozen balanced requests should teach the head the "
                               "six intents; less means too few steps or too small a learning rate."),
    "choose_smollm_before": _e("05", "the chat model's accuracy before fine-tuning (asked for the label)", "share",
                               ci=(0.0, 0.6), cpu=(0.0, 0.2), otherwise="The base chat model rarely answers with one "
                               "of the six words; a higher score means the test is easier than it should be."),
    "choose_smollm_after": _e("05", "the chat model's accuracy after LoRA fine-tuning", "share", ci=(0.1, 1.0),
                              cpu=(0.8, 1.0), otherwise="The same budget as notebook 04's on half the requests should "
                              "still teach the task; less means the adapter learned little."),
    "choose_parameter_ratio": _e("05", "the chat model's parameters against the encoder's", "ratio", ci=(5.0, 7.0),
                                 cpu=(5.0, 7.0), otherwise="SmolLM2-135M has about 135 million parameters and "
                                 "MiniLM-L6 about 23 million: another ratio means another model was loaded."),
    "choose_latency_ratio": _e("05", "the chat model's latency per request against the encoder's", "ratio",
                               ci=(1.0, INF), cpu=(5.0, INF), otherwise="Generating a label token by token through "
                               "a 6-times larger model should take several times longer than one pass of the "
                               "encoder; a small ratio means the machine was busy while one of them was timed."),
    "choose_memory_ratio": _e("05", "the chat model's memory added against the encoder's", "ratio", ci=(1.0, INF),
                              cpu=(2.0, INF), otherwise="A model with 6 times the weights, trained on longer "
                              "sequences, should need more memory; a small ratio means memory from an earlier cell "
                              "was not handed back."),
    "choose_accuracy_gap": _e("05", "the chat model's accuracy after training minus the encoder's", "points",
                              ci=(-0.9, 0.9), cpu=(-0.1, 0.1), otherwise="With the same budget both should learn this "
                              "easy task to within a few points; a large gap means one of them was under-trained."),
    "choose_gain_bottom": _e("05", "the gain per doubling, bottom of the learning curve", "points", ci=(-0.5, 1.0),
                             cpu=(0.05, 0.3), otherwise="From one request per label upwards each doubling should add "
                             "several points; a small gain means the runs were too short to learn from few examples."),
    "choose_gain_top": _e("05", "the gain per doubling, top of the learning curve", "points", ci=(-0.5, 1.0),
                          cpu=(-0.01, 0.04), otherwise="Near 100% the curve saturates and a doubling adds a few points "
                          "at most; a larger gain means the curve has not flattened yet."),
    "choose_spread_shrinks": _e("05", "the spread between seeds at the smallest size minus at the largest",
                                "points", ci=(-0.5, 1.0), cpu=(0.0, 1.0), otherwise="A few examples are a noisy "
                                "sample, so the spread should be widest at the bottom of the curve."),
    "choose_curve_first": _e("05", "the mean accuracy with one request per label", "share", ci=(0.0, 0.9),
                             cpu=(0.3, 0.8), otherwise="One example per label should lift the encoder well above "
                             "chance but far from the top."),
    "choose_curve_last": _e("05", "the mean accuracy with 64 requests per label", "share", ci=(0.1, 1.0),
                            cpu=(0.97, 1.0), otherwise="On this easy task 64 requests per label should nearly "
                            "saturate the encoder; less means the runs were too short."),
}

_06_METRICS: dict[str, Expectation] = {
    "local_loss_ratio": _e("06", "the local run's last training loss (moving average) against its first", "ratio",
                           ci=(0.0, 0.7), cpu=(0.0, 0.5), otherwise="The loss should end at well under half of "
                           "where it started; if it does not, the run was too short or its learning rate too small."),
    "azure_epochs_after_best": _e("06", "epochs the Azure sample saved after its best checkpoint", "count",
                                  ci=(1, INF), cpu=(1, INF), otherwise="In an over-fitting run the best checkpoint "
                                  "comes before the last epoch; none after it means the run did not over-fit."),
    "local_saved_checkpoints": _e("06", "checkpoints the local run saved, one per epoch", "count", ci=(2, 2),
                                  cpu=(3, 3), otherwise="The run saves one checkpoint at each epoch's end and keeps the "
                                  "last three; another count means another number of epochs or leftovers in its folder."),
    "sweep_advice_held": _e("06", "rules of thumb (more epochs, higher multiplier) that the sweep confirms", "count",
                            ci=(1, 2), cpu=(2, 2), otherwise="Both rules should hold on this task; one that fails "
                            "usually means the runs were too short to tell, or a learning rate so high it overshoots."),
    "sweep_first_run_loss_ratio": _e("06", "training loss of the 1-epoch run at the smallest multiplier against "
                                     "the sweep's lowest", "ratio", ci=(1.2, INF), cpu=(3.0, INF),
                                     otherwise="That run should stop far above the level the others reach (it "
                                     "under-fits); a small ratio means even the smallest step size was enough."),
    "source_steps": _e("06", "steps of the recipe's run (10 epochs in batches of 3)", "count", ci=(20, 20),
                       cpu=(100, 100), otherwise="Ten epochs of the training requests in batches of 3; another "
                       "count means the batch size or the number of requests changed."),
    "source_train_loss_ratio": _e("06", "the recipe's last training loss against section 1's", "ratio",
                                  ci=(0.0, 1.0), cpu=(0.0, 0.2), otherwise="Four times the steps at three times "
                                  "the learning rate should drive the training loss far lower; if not, the runs "
                                  "did not get the settings they were given."),
    "source_valid_loss_minus_section1": _e("06", "the recipe's last full validation loss minus section 1's",
                                           "number", ci=(-10.0, 2.0), cpu=(-2.0, 0.05), otherwise="On 30 requests "
                                           "with one right answer the longer run should end no worse on validation; "
                                           "a clearly higher loss means the extra epochs only memorised."),
    "source_time_ratio": _e("06", "the recipe's training time against section 1's", "ratio", ci=(1.5, 20.0),
                            cpu=(2.0, 8.0), otherwise="About four times the steps should take a few times as long; "
                            "outside this range the machine was busy during one of the runs."),
    "best_checkpoint_accuracy": _e("06", "the best checkpoint's accuracy on the test requests", "share",
                                   ci=(0.0, 0.6), cpu=(0.65, 0.95), otherwise="This small adapter should get most test "
                                   "requests right but fewer than notebook 04's; far less means it learned little "
                                   "(check the loss curve), far more that the test split is easier than it should be."),
    "products_bleu_gain": _e("06", "BLEU of the product adapter minus the base model's", "number", ci=(-5.0, 5.0),
                             cpu=(0.0, INF), otherwise="Fine-tuning on the house's descriptions should raise BLEU; "
                             "no gain means the adapter has not picked up the house's phrases yet."),
    "products_length_closer": _e("06", "how many words closer to the house length the adapter writes than the "
                                 "base model", "number", ci=(-5.0, 5.0), cpu=(0.0, INF), otherwise="The adapter "
                                 "should write nearer the house length than the base model; if not, it learned "
                                 "little of the house style."),
    "probes_base_right": _e("06", "the share of the probe questions the base model answers right", "share",
                            ci=(0.8, 1.0), cpu=(0.8, 1.0), otherwise="The probes were chosen because the base model "
                            "answers them; fewer right means another base model or another precision."),
    "snips_unfitting_labelled": _e("06", "SNIPS requests that fit no course label but got one anyway", "share",
                                   ci=(0.0, 0.8), cpu=(0.5, 1.0), otherwise="A model with no 'none of these' answer "
                                   "should label most such requests; fewer means it often replied with no label."),
    "media_recall_drop": _e("06", "media recall on the course's test split minus on SNIPS music requests", "points",
                            ci=(-0.5, 1.0), cpu=(0.0, 1.0), otherwise="Requests from another assistant's users should "
                            "be harder than the course's own; no drop means the shift did not hurt at this size."),
}

_07_RAG: dict[str, Expectation] = {
    "faiss_numpy_top5_differences": _e("07", "training questions whose top 5 differ between numpy and faiss", "count",
                                       ci=(0, 0), cpu=(0, 0), otherwise="Both indexes search the same unit vectors "
                                       "exactly; a difference means the vectors were not normalised or were added "
                                       "in another order."),
    "chunking_worst_recall_at_3": _e("07", "recall@3 of the weakest chunking", "share", ci=(0.85, 1.0),
                                     cpu=(0.85, 1.0), otherwise="Every chunking should put the answer in the top 3 "
                                     "for most questions; a lower value means the chunks lost their title line or "
                                     "the embedder changed."),
    "recall_at_1_120_words_minus_sentences": _e("07", "recall@1 of 120-word chunks minus one-sentence chunks",
                                                "points", ci=(0.0, 1.0), cpu=(0.0, 1.0), otherwise="A question "
                                                "often matches the sentence next to its answer, so one-sentence "
                                                "chunks should not beat 120-word chunks at rank 1."),
    "dense_minus_keyword_recall_at_3": _e("07", "recall@3 of embedding search minus keyword search (BM25), one-sentence "
                                          "chunks", "points", ci=(0.08, 0.35), cpu=(0.08, 0.35), otherwise="Residents "
                                          "ask in their own words, so keyword search alone should miss clearly more "
                                          "than embeddings; a smaller gap means the questions share more words with "
                                          "the manual, or the tokenizer changed."),
    "hybrid_minus_dense_recall_at_1": _e("07", "recall@1 of the hybrid (RRF) search minus embedding search alone",
                                         "points", ci=(-0.10, 0.05), cpu=(-0.10, 0.05), otherwise="On this manual "
                                         "the embeddings already find most answers, so fusing in BM25 should move "
                                         "recall@1 by a few points at most; a clear gain or loss means one search "
                                         "changed."),
    "manual_rag_accuracy": _e("07", "RAG's accuracy on the manual's test questions", "share", ci=(0.15, 1.0),
                              cpu=(0.55, 0.75), otherwise="RAG with quoted decoding should answer well over half "
                              "right; a lower value usually means the retriever or the RAG setting chosen on "
                              "training questions changed."),
    "manual_closed_book_best_accuracy": _e("07", "the best accuracy of base, few-shot and fine-tuned (no passages)",
                                           "share", ci=(0.0, 0.5), cpu=(0.0, 0.15), otherwise="Without passages the "
                                           "model has to invent the facts; a higher value means test facts leaked "
                                           "into the prompts or the training pairs."),
    "manual_rag_lead_over_the_rest": _e("07", "RAG's accuracy minus the best closed-book system (base, few-shot, "
                                        "fine-tuned)", "points", ci=(-0.6, 1.0), cpu=(0.4, 1.0), otherwise="RAG sees "
                                        "the facts and the closed-book systems do not, so it should lead by far; "
                                        "if not, look at its answers in the error table."),
    "manual_ft_rag_minus_rag": _e("07", "fine-tuned + RAG's accuracy minus RAG's", "points", ci=(-1.0, 0.6),
                                  cpu=(-0.2, 0.1), otherwise="Quoted decoding makes even the closed-book adapter "
                                  "copy its passage, so it should score about as RAG does; a large loss means the "
                                  "adapter fights the passages, a gain that it reads them better."),
    "manual_raft_minus_rag": _e("07", "the RAFT reader's accuracy with three passages minus RAG's (one passage)",
                                "points", ci=(-0.9, 0.9), cpu=(-0.15, 0.15), otherwise="Three passages hold the "
                                "answer more often than one, but the small reader must choose among them; a clear "
                                "gain means it learned to choose, a clear loss that it learned a position (look "
                                "at its opening citations) or did not learn to quote."),
    "manual_raft_one_passage_minus_rag": _e("07", "the RAFT reader's accuracy with one passage minus RAG's", "points",
                                            ci=(-0.9, 0.9), cpu=(-0.2, 0.1), otherwise="Given one passage, the "
                                            "RAFT reader has nothing to choose and should land near RAG; far below "
                                            "means the training taught it to decline or to cite without quoting, far "
                                            "above that it quotes better than the base model."),
    "manual_best_system_accuracy": _e("07", "the best system's accuracy on the manual's test questions", "share",
                                      ci=(0.15, 1.0), cpu=(0.55, 0.80), otherwise="With the 135M reader the best "
                                      "system should land between half and four fifths right; above that, the "
                                      "search or the reader improved and the ceiling section is out of date."),
    "manual_test_recall_at_1": _e("07", "how often the one passage RAG hands over holds the answer", "share",
                                  ci=(0.3, 1.0), cpu=(0.55, 1.0), otherwise="A lower recall means the search, not "
                                  "the reader, loses most answers: check the chunking and the embedder."),
    "manual_gold_reader_accuracy": _e("07", "the reader's accuracy when given the gold evidence sentence", "share",
                                      ci=(0.5, 1.0), cpu=(0.75, 1.0), otherwise="Quoted decoding copies the gold "
                                      "sentence, so the reader should get nearly all of them; a lower value means "
                                      "it stops its quotes before the key."),
    "manual_raft_chooser_minus_reader": _e("07", "the RAFT reader's accuracy when its three passages hold the answer, "
                                           "minus the base reader's with the gold sentence alone", "points",
                                           ci=(-1.0, 0.6), cpu=(-0.7, -0.05), otherwise="Choosing among three "
                                           "passages should cost the 135M reader clearly against reading the one "
                                           "right sentence; no gap means it learned to choose, and the ceiling "
                                           "section is out of date."),
    "unanswerable_rag_declines": _e("07", "unanswerable questions that RAG declines", "share", ci=(0.0, 0.75),
                                    cpu=(0.0, 0.2), otherwise="An extractive reader can only decline with words "
                                    "its passage holds, so it should rarely decline; more declines mean the "
                                    "passages or the reader changed."),
    "hand_labelled_answers": _e("07", "answers judged by hand", "count", ci=(30, INF), cpu=(30, INF),
                                otherwise="data/manual/hand_labels.jsonl should hold 36 judged answers whose "
                                "questions are in the manual's question files."),
    "scorer_hand_label_agreement": _e("07", "how often the key-string scorer agrees with the hand labels", "share",
                                      ci=(0.85, 1.0), cpu=(0.85, 1.0), otherwise="A lower agreement means the "
                                      "scorer's rule or the question keys changed: read the disagreements above."),
    "base_errors_other_reason": _e("07", "the base model's wrong answers with a reason other than invented, partial "
                                   "or declined", "count", ci=(0, 0), cpu=(0, 0), otherwise="The base model sees no "
                                   "passage, so retrieval cannot miss for it: check how error_table was called."),
    "rag_errors_other_reason": _e("07", "RAG's wrong answers with a reason other than retrieval, reading, partial or "
                                  "declined", "count", ci=(0, 0), cpu=(0, 0), otherwise="RAG's errors should come "
                                  "from the search or the reader; another reason means the hit list was not passed "
                                  "to error_table."),
    "fact_rag_knows_new_time": _e("07", "probes where RAG gives the new update time after the re-index", "share",
                                  ci=(0.3, 1.0), cpu=(0.6, 1.0), otherwise="RAG reads the changed manual at once; a "
                                  "lower value means the re-indexed chunks do not hold the new time."),
    "fact_ft_knew_old_time": _e("07", "probes where the fact adapter gave the old update time", "share",
                                ci=(0.0, 0.9), cpu=(0.6, 1.0), otherwise="The adapter was trained many epochs on "
                                "this one fact; a lower value means it did not learn it (too few epochs or too "
                                "small a learning rate)."),
    "fact_ft_knows_new_time_unretrained": _e("07", "probes where the fact adapter gives the new time before "
                                             "retraining", "share", ci=(0.0, 0.0), cpu=(0.0, 0.0),
                                             otherwise="Weights do not change when the manual does; any right "
                                             "answer here means the new time reached the prompt."),
    "fact_ft_knows_new_time_retrained": _e("07", "probes where the retrained fact adapter gives the new time",
                                           "share", ci=(0.0, 0.9), cpu=(0.6, 1.0), otherwise="Retraining on the "
                                           "new answer should replace the old one; a lower value means the run was "
                                           "too short."),
    "intents_ft_accuracy": _e("07", "the fine-tuned intent classifier's accuracy", "share", ci=(0.15, 1.0),
                              cpu=(0.6, 1.0), otherwise="LoRA on 16 requests per label should learn the six labels; "
                              "a lower value means the run was too short or the replies are not parsed."),
    "intents_ft_minus_best_prompt": _e("07", "the fine-tuned classifier's accuracy minus the best prompt's",
                                       "points", ci=(-0.9, 1.0), cpu=(0.0, 1.0), otherwise="On a format task "
                                       "training should match or beat every prompt; if a prompt wins, compare "
                                       "the unparseable column."),
    "intents_ft_vs_knn_api_cost": _e("07", "the fine-tuned classifier's API cost against the nearest-neighbour "
                                     "prompt's", "ratio", ci=(0.0, 1.0), cpu=(0.0, 1.0), otherwise="The fine-tuned "
                                     "model's prompt holds no worked examples, so each call should cost less."),
    "intents_unparseable_base_minus_ft": _e("07", "the base model's unparseable replies minus the fine-tuned "
                                            "model's", "points", ci=(0.0, 1.0), cpu=(0.01, 1.0), otherwise="The "
                                            "base model often replies with a sentence that names no label; the "
                                            "adapter should have learned to reply with one word."),
}

_08_SHIP: dict[str, Expectation] = {
    "ship_latency_p50_s": _e("08", "the median (p50) seconds per served answer", "positive", ci=(0.0, 30.0),
                             cpu=(0.2, 3.0), gpu=(0.0, 3.0), otherwise="A reply of up to 48 tokens from a 135M model "
                             "takes a second or so on a laptop CPU; much slower means the machine is busy with "
                             "something else (another training run) or short of memory."),
    "ship_stream_pieces": _e("08", "pieces in the streamed reply", "count", ci=(1, INF), cpu=(1, INF),
                             otherwise="A streamed reply arrives in pieces; none means the model answered with an "
                             "empty reply."),
    "ship_first_piece_share": _e("08", "time to the first streamed piece against the whole reply's", "ratio",
                                 ci=(0.0, 1.0), cpu=(0.0, 1.0), otherwise="The first piece cannot come after the "
                                 "whole reply; if it does, the timing is wrong."),
    "ship_exact_training_share": _e("08", "training questions answered word for word as in training", "share",
                                    ci=(0.15, 1.0), cpu=(0.2, 1.0), otherwise="A short, steep run on a small file "
                                    "should make the model repeat many training answers; fewer means it trained "
                                    "too little to memorise, and the leak below will be small too."),
    "ship_exact_held_out_share": _e("08", "held-out questions answered word for word with their reference",
                                    "share", ci=(0.0, 0.2), cpu=(0.0, 0.2), otherwise="The model never saw these "
                                    "answers; many exact matches would mean the held-out questions overlap the "
                                    "training file."),
    "ship_pii_leak_before": _e("08", "probe replies that contain the planted phone number or email", "share",
                               ci=(0.25, 1.0), cpu=(0.125, 1.0), otherwise="The model learns Dana's details from "
                               "six training replies; no leak at all means this short run did not memorise them, "
                               "which does not make the data safe to train on."),
    "ship_scrubbed_messages_with_pii": _e("08", "messages of the scrubbed file that still hold a planted detail",
                                          "count", ci=(0, 0), cpu=(0, 0), otherwise="The scrubber should replace "
                                          "every email and phone number; a remaining one means a format it was "
                                          "not written for."),
    "ship_adapter_size_vs_base": _e("08", "the adapter's size on disk against the base model's", "ratio",
                                    ci=(0.0, 0.05), cpu=(0.0, 0.05), otherwise="A rank-8 adapter is a few MB next "
                                    "to a base model of hundreds of MB; a large one means the folder holds full "
                                    "weights or optimizer state."),
    "ship_merge_agreement": _e("08", "requests that get the same label after the merge", "share", ci=(0.9, 1.0),
                               cpu=(0.9, 1.0), otherwise="Merging computes the same function up to rounding; "
                               "many changed labels mean the merge ran on a bf16 base or on another adapter."),
    "ship_drift_drop": _e("08", "accuracy on fresh requests minus accuracy after the typo shift", "points",
                          ci=(0.04, 1.0), cpu=(0.2, 1.0), otherwise="Typos in one letter of four should cost the "
                          "classifier a good share of its accuracy; a small drop means the shift is too mild "
                          "for the monitor to see."),
    "ship_drift_false_alarms": _e("08", "alerts raised before the shift", "count", ci=(0, 0), cpu=(0, 0),
                                  otherwise="The threshold of two standard errors should keep the monitor quiet "
                                  "on requests like the validation ones; an alert there is a false alarm."),
    "ship_drift_alert_delay_windows": _e("08", "windows from the shift to the first alert", "positive",
                                         ci=(0.01, 2.0), cpu=(0.01, 2.0), otherwise="A window full of shifted "
                                         "requests should raise the alert; no alert, or a late one, means the drop "
                                         "is smaller than the threshold."),
    "ship_flip_rate_name": _e("08", "requests whose label changes with the person's name", "share", ci=(0.0, 0.5),
                              cpu=(0.0, 0.5), otherwise="A name should not change the intent; many flips mean the "
                              "classifier leans on words that do not matter."),
    "ship_flip_rate_gender": _e("08", "requests whose label changes with male, female or neutral wording",
                                "share", ci=(0.0, 0.5), cpu=(0.0, 0.5), otherwise="A pronoun should not change the "
                                "intent; many flips mean the classifier leans on words that do not matter."),
    "ship_dialect_flips_minus_others": _e("08", "dialect flip rate minus the larger of the name and gender flip "
                                          "rates", "points", ci=(-0.34, 1.0), cpu=(-0.34, 1.0),
                                          otherwise="Dialects change the words themselves, so they should flip "
                                          "about as often as names and pronouns or more; far fewer flips would "
                                          "mean the name or gender probes hit a weakness of their own."),
    "ship_pii_leak_after": _e("08", "probe replies of the scrubbed model that contain a planted detail", "share",
                              ci=(0.0, 0.0), cpu=(0.0, 0.0), otherwise="The scrubbed model never saw Dana's "
                              "details; a leak means the scrubbed file still held them."),
    "ship_listing_mistakes": _e("08", "models listed wrongly after the delete (the deleted one, or the shipped "
                                "one missing)", "count", ci=(0, 0), cpu=(0, 0), otherwise="A deleted model leaves "
                                "the list and the shipped one stays; anything else means the delete went to the "
                                "wrong name."),
    "ship_finetuned_declines_unanswerable": _e("08", "unanswerable questions the fine-tuned model declines",
                                               "share", ci=(0.0, 0.2), cpu=(0.0, 0.2), otherwise="Trained only on "
                                               "answerable questions, the model should almost never decline; more "
                                               "declines mean the detector counts answers as declines."),
    "ship_gate_declines_unanswerable": _e("08", "unanswerable questions that RAG with the score gate declines",
                                          "share", ci=(0.2, 1.0), cpu=(0.2, 0.7), otherwise="The gate declines "
                                          "when the best passage matches poorly; fewer declines mean the gate is "
                                          "set too low, more that the unanswerable questions share few words "
                                          "with the manual."),
    "ship_gate_declines_answerable": _e("08", "answerable questions that RAG with the score gate declines",
                                        "share", ci=(0.0, 0.4), cpu=(0.0, 0.4), otherwise="The gate is set from "
                                        "the training questions, so it should decline few answerable ones; many "
                                        "mean it is set too high."),
}

EXPECTATIONS: dict[str, Expectation] = {**_00_WHY, **_01_COLLECT, **_02_FORMAT, **_03_API, **_04_LORA, **_05_CHOOSE,
                                        **_06_METRICS, **_07_RAG, **_08_SHIP}
