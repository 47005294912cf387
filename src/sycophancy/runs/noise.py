"""Third-party messages printed on every run that say nothing about it, filtered at their source.

Each filter names one message and its category or logger; every other warning still shows.
"""

from __future__ import annotations

import logging
import warnings

# (message regex, category, why it is noise here)
WARNINGS = (
    (
        r"Found \d+ module\(s\) in eval mode at the start of training",
        "PossibleUserWarning",
        "the frozen base stays in eval mode on purpose (training/module.py)",
    ),
    (
        r"You're resuming from a checkpoint that ended before the epoch ended",
        "PossibleUserWarning",
        "BalancedSampler resumes mid-epoch at the right batch itself (training/batches.py)",
    ),
    (
        r"The dirpath has changed from .* therefore `best_model_score`",
        "UserWarning",
        "a resumed run writes into its own folder; no best-k checkpoints are kept",
    ),
    (
        r"It is recommended to use `self.log\('val/(?!loss)",
        "PossibleUserWarning",
        "the validation probe runs on rank 0 alone, by design (training/module.py); val/loss syncs",
    ),
    (
        r"`is_gradient_checkpointing` is deprecated",
        "FutureWarning",
        "transformers 5 deprecation hit by peft's own code on every adapter",
    ),
    (
        r"`isinstance\(treespec, LeafSpec\)` is deprecated",
        "FutureWarning",
        "torch deprecation hit by Lightning's own code on every training step",
    ),
)
LOG_PREFIXES = {  # logger -> start of an info message to drop
    "lightning.pytorch.utilities.rank_zero": ("💡 Tip:",),
    "lightning.fabric.utilities.rank_zero": ("💡 Tip:",),
}


class _DropPrefix(logging.Filter):
    """Drops records whose message starts with one of `prefixes`."""

    def __init__(self, prefixes: tuple[str, ...]):
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith(self.prefixes)


def _category(name: str) -> type[Warning]:
    if name == "PossibleUserWarning":
        from lightning.fabric.utilities.warnings import PossibleUserWarning

        return PossibleUserWarning
    return {"UserWarning": UserWarning, "FutureWarning": FutureWarning}[name]


def quiet_third_party() -> None:
    """Install the filters above (idempotent)."""
    for message, category, _ in WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=_category(category))
    for name, prefixes in LOG_PREFIXES.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropPrefix) for f in logger.filters):
            logger.addFilter(_DropPrefix(prefixes))
