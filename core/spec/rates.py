"""Learning rates: the local base rates that ``learning_rate_multiplier`` scales, and the one range they must be in.

Why here: the spec check and the local trainer must accept and refuse the same rates. ``spec check`` resolves the
multiplier against the base rate and refuses a result the trainer would refuse, with the trainer's own words
(:func:`learning_rate_problem`), so a spec that checks OK never fails at train for its learning rate.
"""

from __future__ import annotations

import math

__all__ = [
    "BASE_LEARNING_RATES",
    "AUTO_LEARNING_RATE_MULTIPLIER",
    "LEARNING_RATE_MIN",
    "LEARNING_RATE_MAX",
    "base_learning_rate",
    "learning_rate_problem",
]

# Base learning rates that learning_rate_multiplier scales locally ("auto" multiplier = 1.0). Values from the
# Hugging Face alignment-handbook recipes: SFT 2e-4 with (Q)LoRA, 2e-5 full; DPO 5e-6 with (Q)LoRA, 5e-7 full.
BASE_LEARNING_RATES: dict[tuple[str, str], float] = {
    ("supervised", "lora"): 2e-4,
    ("supervised", "qlora"): 2e-4,
    ("supervised", "full"): 2e-5,
    ("dpo", "lora"): 5e-6,
    ("dpo", "qlora"): 5e-6,
    ("dpo", "full"): 5e-7,
}
AUTO_LEARNING_RATE_MULTIPLIER = 1.0

# The trainer's range for the learning rate it uses: (0, 1].
LEARNING_RATE_MIN = 0.0
LEARNING_RATE_MAX = 1.0


def base_learning_rate(method: str, finetuning_type: str) -> float:
    """The local base learning rate that ``learning_rate_multiplier`` scales (see :data:`BASE_LEARNING_RATES`)."""
    return BASE_LEARNING_RATES[(method, finetuning_type)]


def learning_rate_problem(value: object) -> str | None:
    """What is wrong with a learning rate the local trainer would use, or None when it is in (0, 1]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return f"must be a finite number, got {value!r}"
    if not LEARNING_RATE_MIN < value <= LEARNING_RATE_MAX:
        return f"must be in ({LEARNING_RATE_MIN}, {LEARNING_RATE_MAX}], got {value}"
    return None
