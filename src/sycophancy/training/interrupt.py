"""Interrupted training: a resumable checkpoint on SIGINT/SIGTERM and after every epoch, RNG restored.

Lightning turns SIGTERM into a `SystemExit` without a code (exit 0) and `ModelCheckpoint(save_last=
True, save_top_k=0)` writes `last.ckpt` only when training ends. `Interruption` catches both signals,
finishes the optimizer step in progress, writes `last.ckpt` and raises `Interrupted` (exit 128 +
signal number). The checkpoint carries the global RNG states, put back before the first batch after
a resume, so a resumed run repeats the uninterrupted one exactly (the batches come from
`BalancedSampler`, positioned by the trainer's step).
"""

from __future__ import annotations

import os
import random
import signal
from pathlib import Path

import lightning as L
import numpy as np
import torch

from sycophancy.errors import UserError

SIGNALS = (signal.SIGINT, signal.SIGTERM)
TEST_SIGNAL_ENV = (
    "SYCOPHANCY_TEST_SIGNAL_AT_STEP"  # tests: "3" or "3:SIGINT" signals itself at step 3
)
LAST = "last.ckpt"


class Interrupted(UserError):
    """Training stopped on a signal; a resumable checkpoint was written (exit code 128 + signal)."""

    def __init__(self, signum: int, step: int, epoch: int, checkpoint: Path | None):
        self.exit_code = 128 + int(signum)
        self.checkpoint = checkpoint
        name = signal.Signals(signum).name
        if checkpoint is None:
            resume = "No checkpoint was written yet (no step had finished); start the run again."
        else:
            resume = (
                f"A resumable checkpoint is in {checkpoint}: run the same command with "
                f"`ckpt_path={checkpoint}` to continue from step {step}; the resumed run reaches the "
                "same adapter as an uninterrupted one."
            )
        super().__init__(
            f"Training was interrupted by {name} at step {step} (epoch {epoch}). {resume}"
        )


def rng_state() -> dict:
    """The global random states training may draw from (dropout, Python, NumPy, CUDA), as tensors
    and plain values (checkpoints load with weights_only=True)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Put back what `rng_state` returned."""
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class Interruption(L.Callback):
    """Writes `<dirpath>/last.ckpt` after every epoch and, on SIGINT/SIGTERM, after the step in
    progress, then raises `Interrupted`; restores the RNG states of a checkpoint it resumes from."""

    def __init__(self, dirpath: str | Path):
        self.dirpath = Path(dirpath)
        self.signum: int | None = None
        self._previous: dict = {}
        self._resumed_rng: dict | None = None
        self._test_step, self._test_signal = _test_signal()

    @property
    def path(self) -> Path:
        """Where the checkpoint goes."""
        return self.dirpath / LAST

    def on_train_start(self, trainer, pl_module) -> None:
        for signum in SIGNALS:
            self._previous[signum] = signal.getsignal(signum)
            signal.signal(signum, self._handle)

    def _handle(self, signum, frame) -> None:
        """Note the signal; the step in progress finishes first (a second SIGINT stops at once).
        Lightning's own SIGTERM handler is replaced, not chained: it would stop in the middle of a
        validation, before any checkpoint; the ranks agree on stopping at each step instead."""
        if signum == signal.SIGINT and self.signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum

    def on_train_end(self, trainer, pl_module) -> None:
        self._restore_handlers()

    def on_exception(self, trainer, pl_module, exception) -> None:
        self._restore_handlers()

    def _restore_handlers(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self._previous = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._resumed_rng is not None:  # after the dataloader's set-up, before the first step
            set_rng_state(self._resumed_rng)
            self._resumed_rng = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._test_step is not None and trainer.global_step == self._test_step:
            os.kill(os.getpid(), self._test_signal)
        if batch_idx + 1 >= trainer.num_training_batches:
            return  # the epoch's last batch: on_train_epoch_end saves after validation
        self._stop_if_signalled(trainer)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        trainer.save_checkpoint(self.path, weights_only=False)
        self._stop_if_signalled(trainer, saved=True)

    def _stop_if_signalled(self, trainer, saved: bool = False) -> None:
        """After a signal (on any rank): write the checkpoint and raise Interrupted."""
        if not trainer.strategy.reduce_boolean_decision(self.signum is not None, all=False):
            return
        if not saved:
            trainer.save_checkpoint(self.path, weights_only=False)
        raise Interrupted(
            self.signum or signal.SIGTERM, trainer.global_step, trainer.current_epoch, self.path
        )

    def state_dict(self) -> dict:
        return {"rng": rng_state()}

    def load_state_dict(self, state_dict: dict) -> None:
        self._resumed_rng = state_dict.get("rng")

    def interrupted(self, trainer, signum: int | None = None) -> Interrupted | None:
        """The error to raise after `fit` returned or Lightning stopped on `signum` itself (during
        validation), naming the last checkpoint written; None when no signal came."""
        signum = self.signum or signum
        if signum is None:
            return None
        checkpoint = self.path if self.path.is_file() else None
        return Interrupted(signum, trainer.global_step, trainer.current_epoch, checkpoint)


def _test_signal() -> tuple[int | None, int]:
    """(step, signal) from SYCOPHANCY_TEST_SIGNAL_AT_STEP, for tests that interrupt a run."""
    value = os.environ.get(TEST_SIGNAL_ENV)
    if not value:
        return None, signal.SIGTERM
    step, _, name = value.partition(":")
    return int(step), getattr(signal, name or "SIGTERM")
