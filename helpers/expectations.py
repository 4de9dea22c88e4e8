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
}

_07_SHIP: dict[str, Expectation] = {
    "ship_latency_p50_s": _e("07", "the median (p50) seconds per served answer", "positive", ci=(0.0, 30.0),
                             cpu=(0.2, 3.0), gpu=(0.0, 3.0), otherwise="A reply of up to 48 tokens from a 135M model "
                             "takes a second or so on a laptop CPU; much slower means the machine is busy with "
                             "something else (another training run) or short of memory."),
    "ship_stream_pieces": _e("07", "pieces in the streamed reply", "count", ci=(1, INF), cpu=(1, INF),
                             otherwise="A streamed reply arrives in pieces; none means the model answered with an "
                             "empty reply."),
    "ship_first_piece_share": _e("07", "time to the first streamed piece against the whole reply's", "ratio",
                                 ci=(0.0, 1.0), cpu=(0.0, 1.0), otherwise="The first piece cannot come after the "
                                 "whole reply; if it does, the timing is wrong."),
    "ship_exact_training_share": _e("07", "training questions answered word for word as in training", "share",
                                    ci=(0.15, 1.0), cpu=(0.2, 1.0), otherwise="A short, steep run on a small file "
                                    "should make the model repeat many training answers; fewer means it trained "
                                    "too little to memorise, and the leak below will be small too."),
    "ship_exact_held_out_share": _e("07", "held-out questions answered word for word with their reference",
                                    "share", ci=(0.0, 0.2), cpu=(0.0, 0.2), otherwise="The model never saw these "
                                    "answers; many exact matches would mean the held-out questions overlap the "
                                    "training file."),
    "ship_pii_leak_before": _e("07", "probe replies that contain the planted phone number or email", "share",
                               ci=(0.25, 1.0), cpu=(0.125, 1.0), otherwise="The model learns Dana's details from "
                               "six training replies; no leak at all means this short run did not memorise them, "
                               "which does not make the data safe to train on."),
    "ship_scrubbed_messages_with_pii": _e("07", "messages of the scrubbed file that still hold a planted detail",
                                          "count", ci=(0, 0), cpu=(0, 0), otherwise="The scrubber should replace "
                                          "every email and phone number; a remaining one means a format it was "
                                          "not written for."),
    "ship_adapter_size_vs_base": _e("07", "the adapter's size on disk against the base model's", "ratio",
                                    ci=(0.0, 0.05), cpu=(0.0, 0.05), otherwise="A rank-8 adapter is a few MB next "
                                    "to a base model of hundreds of MB; a large one means the folder holds full "
                                    "weights or optimizer state."),
    "ship_merge_agreement": _e("07", "requests that get the same label after the merge", "share", ci=(0.9, 1.0),
                               cpu=(0.9, 1.0), otherwise="Merging computes the same function up to rounding; "
                               "many changed labels mean the merge ran on a bf16 base or on another adapter."),
    "ship_drift_drop": _e("07", "accuracy on fresh requests minus accuracy after the typo shift", "points",
                          ci=(0.04, 1.0), cpu=(0.2, 1.0), otherwise="Typos in one letter of four should cost the "
                          "classifier a good share of its accuracy; a small drop means the shift is too mild "
                          "for the monitor to see."),
    "ship_drift_false_alarms": _e("07", "alerts raised before the shift", "count", ci=(0, 0), cpu=(0, 0),
                                  otherwise="The threshold of two standard errors should keep the monitor quiet "
                                  "on requests like the validation ones; an alert there is a false alarm."),
    "ship_drift_alert_delay_windows": _e("07", "windows from the shift to the first alert", "positive",
                                         ci=(0.01, 2.0), cpu=(0.01, 2.0), otherwise="A window full of shifted "
                                         "requests should raise the alert; no alert, or a late one, means the drop "
                                         "is smaller than the threshold."),
    "ship_flip_rate_name": _e("07", "requests whose label changes with the person's name", "share", ci=(0.0, 0.5),
                              cpu=(0.0, 0.5), otherwise="A name should not change the intent; many flips mean the "
                              "classifier leans on words that do not matter."),
    "ship_flip_rate_gender": _e("07", "requests whose label changes with male, female or neutral wording",
                                "share", ci=(0.0, 0.5), cpu=(0.0, 0.5), otherwise="A pronoun should not change the "
                                "intent; many flips mean the classifier leans on words that do not matter."),
    "ship_dialect_flips_minus_others": _e("07", "dialect flip rate minus the larger of the name and gender flip "
                                          "rates", "points", ci=(-0.34, 1.0), cpu=(-0.34, 1.0),
                                          otherwise="Dialects change the words themselves, so they should flip "
                                          "about as often as names and pronouns or more; far fewer flips would "
                                          "mean the name or gender probes hit a weakness of their own."),
    "ship_pii_leak_after": _e("07", "probe replies of the scrubbed model that contain a planted detail", "share",
                              ci=(0.0, 0.0), cpu=(0.0, 0.0), otherwise="The scrubbed model never saw Dana's "
                              "details; a leak means the scrubbed file still held them."),
    "ship_listing_mistakes": _e("07", "models listed wrongly after the delete (the deleted one, or the shipped "
                                "one missing)", "count", ci=(0, 0), cpu=(0, 0), otherwise="A deleted model leaves "
                                "the list and the shipped one stays; anything else means the delete went to the "
                                "wrong name."),
    "ship_finetuned_declines_unanswerable": _e("07", "unanswerable questions the fine-tuned model declines",
                                               "share", ci=(0.0, 0.2), cpu=(0.0, 0.2), otherwise="Trained only on "
                                               "answerable questions, the model should almost never decline; more "
                                               "declines mean the detector counts answers as declines."),
    "ship_gate_declines_unanswerable": _e("07", "unanswerable questions that RAG with the score gate declines",
                                          "share", ci=(0.2, 1.0), cpu=(0.2, 0.7), otherwise="The gate declines "
                                          "when the best passage matches poorly; fewer declines mean the gate is "
                                          "set too low, more that the unanswerable questions share few words "
                                          "with the manual."),
    "ship_gate_declines_answerable": _e("07", "answerable questions that RAG with the score gate declines",
                                        "share", ci=(0.0, 0.4), cpu=(0.0, 0.4), otherwise="The gate is set from "
                                        "the training questions, so it should decline few answerable ones; many "
                                        "mean it is set too high."),
}

EXPECTATIONS: dict[str, Expectation] = {**_00_WHY, **_01_COLLECT, **_02_FORMAT, **_03_API, **_04_LORA, **_05_METRICS,
                                        **_06_RAG, **_07_SHIP}
