"""Check functions for the notebook exercises.

Each check takes the learner's answer. While the answer is still ``...`` it prints a hint and returns
``False``; a wrong answer prints what is wrong and returns ``False``; a right one prints "Correct" and
returns ``True``. The hidden solution cells call the same checks through ``checks.confirm``, which stops a
ci-mode run when a solution fails. Notebooks call them as ``exercises.check_...``; every name is re-exported
here. The student versions (``tools/make_student.py``) drop the solutions, so there each check says "not
done yet".

Modules, one per notebook:

- ``why``: 00, why fine-tune (prompt, RAG or fine-tune; a learning rate that converges).
- ``collect``: 01, collect data (masking postcodes).
- ``validate``: 02, format and validate (a legacy record; a split without leakage).
- ``api``: 03, fine-tune through the API (the ``"auto"`` epochs rule; events as a frame).
- ``lora``: 04, LoRA on your machine (adapter parameters; ZeRO memory per GPU).
- ``choose``: 05, choose a base model and how much data (the gain per doubling of the data).
- ``metrics``: 06, read the metrics (fit verdicts, macro F1, ROUGE-L's blind spot, the mystery runs).
- ``rag``: 07, RAG or fine-tune (cosine top-k; choosing an approach).
- ``ship``: 08, ship it (the best checkpoint, drift-monitor settings, a decline detector).
- ``_common``: the "not done yet" hint, the verdict and the multiple-choice check they share.
"""
from helpers.exercises.api import AUTO_EPOCH_CASES, check_auto_epochs, check_events_frame
from helpers.exercises.choose import DOUBLING_CASES, check_gain_per_doubling
from helpers.exercises.collect import POSTCODE_CASES, check_mask_postcodes
from helpers.exercises.lora import ZERO_CASES, check_lora_params, check_zero_memory, zero_memory_gb
from helpers.exercises.metrics import check_fit_verdicts, check_macro_f1, check_rouge_blind_spot, mystery_runs
from helpers.exercises.rag import (DECISION_REASONS, DECISION_SCENARIOS, DECISIONS, check_cosine_top_k,
                                   check_decisions)
from helpers.exercises.ship import (ANSWER_CASES, DECLINE_CASES, check_best_checkpoint, check_decline_detector,
                                    check_drift_settings)
from helpers.exercises.validate import check_legacy_record, check_no_leakage
from helpers.exercises.why import APPROACHES, REASONS, SCENARIOS, check_approaches, check_learning_rate

__all__ = [
    "APPROACHES", "REASONS", "SCENARIOS", "check_approaches", "check_learning_rate",  # 00
    "POSTCODE_CASES", "check_mask_postcodes",  # 01
    "check_legacy_record", "check_no_leakage",  # 02
    "AUTO_EPOCH_CASES", "check_auto_epochs", "check_events_frame",  # 03
    "ZERO_CASES", "check_lora_params", "check_zero_memory", "zero_memory_gb",  # 04
    "DOUBLING_CASES", "check_gain_per_doubling",  # 05
    "check_fit_verdicts", "check_macro_f1", "check_rouge_blind_spot", "mystery_runs",  # 06
    "DECISIONS", "DECISION_REASONS", "DECISION_SCENARIOS", "check_cosine_top_k", "check_decisions",  # 07
    "ANSWER_CASES", "DECLINE_CASES", "check_best_checkpoint", "check_decline_detector", "check_drift_settings",  # 08
]
