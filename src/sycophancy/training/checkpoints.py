"""Checkpoints to resume from: read and checked before the model loads, then against the model."""

from __future__ import annotations

from pathlib import Path

import torch

from sycophancy.errors import UserError
from sycophancy.models.fingerprint import check_fingerprint

# mitigation settings that shape the trainable tensors: a checkpoint with other values cannot resume
SHAPING = ("kind", "num_virtual_tokens", "r", "target_modules")


def read_checkpoint(path: str | Path, cfg: dict) -> dict:
    """The checkpoint at `path`, refused (before the model loads) when it is missing, unreadable,
    not one of train.py's or made with adapter settings other than `cfg`'s."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(
            f"ckpt_path={path} does not exist. Point it at <run>/checkpoints/last.ckpt of the "
            "train.py run to resume."
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, not a torch file, foreign pickle
        raise UserError(
            f"ckpt_path={path} is not a readable checkpoint ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:200]}). It may have been cut off while being copied; "
            "use another checkpoint or start the run without ckpt_path."
        ) from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise UserError(f"ckpt_path={path} is not a Lightning checkpoint of a train.py run.")
    saved = (checkpoint.get("hyper_parameters") or {}).get("mitigation") or {}
    wanted = cfg.get("mitigation") or {}
    differ = [k for k in SHAPING if k in saved and saved.get(k) != wanted.get(k)]
    differ = ["kind"] if "kind" in differ else differ  # another kind differs in everything
    if differ:
        shown = ", ".join(f"mitigation.{k}={saved.get(k)} (now {wanted.get(k)})" for k in differ)
        raise UserError(
            f"ckpt_path={path} was trained with {shown}; resuming needs the same adapter "
            "settings. Give those values on the command line, or start without ckpt_path."
        )
    return checkpoint


def check_checkpoint_model(checkpoint: dict, lm, path) -> None:
    """Refuse a checkpoint made on another base model (before any measurement)."""
    check_fingerprint(checkpoint.get("base_model"), lm, "checkpoint", path)
