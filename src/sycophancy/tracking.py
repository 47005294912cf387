"""Experiment loggers (W&B, CSV or none) built from the `logger` config group, never fatal."""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)


def flatten_metrics(metrics: dict, prefix: str = "") -> dict[str, float]:
    """Flat `a/b` keys with numeric values only (intervals become `_low` / `_high`)."""
    flat: dict[str, float] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_metrics(value, f"{name}/"))
        elif (
            isinstance(value, list | tuple)
            and len(value) == 2
            and all(isinstance(v, int | float) for v in value)
        ):
            flat[f"{name}_low"], flat[f"{name}_high"] = float(value[0]), float(value[1])
        elif isinstance(value, int | float):
            flat[name] = float(value)
    return flat


def wandb_mode(configured: str | None) -> str:
    """The W&B mode: WANDB_MODE from the environment wins, then the config, then offline."""
    return os.environ.get("WANDB_MODE") or configured or "offline"


def make_logger(cfg: dict, run_dir: Path, run_name: str, group: str | None = None):
    """A Lightning logger for the `logger` config (kind: none | csv | wandb), or None."""
    kind = (cfg or {}).get("kind", "none")
    if kind == "none":
        return None
    if kind == "csv":
        from lightning.pytorch.loggers import CSVLogger

        return CSVLogger(save_dir=str(run_dir), name="csv", version="")
    if kind == "wandb":
        try:
            from lightning.pytorch.loggers import WandbLogger

            return WandbLogger(
                project=cfg.get("project", "sycophancy"),
                entity=os.environ.get("WANDB_ENTITY") or cfg.get("entity"),
                name=run_name,
                group=group,
                save_dir=str(run_dir),
                mode=wandb_mode(cfg.get("mode")),
                tags=list(cfg.get("tags") or []),
            )
        except Exception as exc:  # a run never fails because W&B is unavailable
            log.warning("W&B logger unavailable (%s); continuing without it", exc)
            return None
    raise ValueError(f"unknown logger kind {kind!r}")


def finish(logger) -> None:
    """Flush and close a logger; for W&B also end the run so the next job starts its own."""
    if logger is None:
        return
    try:
        logger.finalize("success")
        if type(logger).__name__ == "WandbLogger":
            import wandb

            wandb.finish()
    except Exception as exc:
        log.warning("closing the logger failed (%s)", exc)
