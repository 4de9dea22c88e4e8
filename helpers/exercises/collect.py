"""Checks for notebook 01, collect data: masking UK postcodes."""
from __future__ import annotations

from helpers.exercises._common import _not_done, _verdict

POSTCODE_CASES = {
    "Send it to 22 Birch Road, SW1A 1AA please": "Send it to 22 Birch Road, [POSTCODE] please",
    "my postcode is m1 1ae": "my postcode is [POSTCODE]",
    "Postcode: EC1A 1BB.": "Postcode: [POSTCODE].",
    "The heater runs 16:30 to 18:00": "The heater runs 16:30 to 18:00",
    "Model H2 AB12 is fine": "Model H2 AB12 is fine",
}


def check_mask_postcodes(mask) -> bool:
    """``mask(text)`` must replace UK postcodes (like ``SW1A 1AA``) with ``[POSTCODE]`` and leave the rest."""
    if _not_done(mask):
        return False
    problems = []
    for text, expected in POSTCODE_CASES.items():
        got = mask(text)
        if got != expected:
            problems.append(f"mask({text!r}) gave {got!r}, expected {expected!r}")
    return _verdict(problems)
