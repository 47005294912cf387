"""Experiment loggers (W&B, CSV or none) built from the `logger` config group, never fatal."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from sycophancy.metrics.table import METRICS

log = logging.getLogger(__name__)

INTERVALS = frozenset(f"{m.name}_ci" for m in METRICS)


def flatten_metrics(metrics: dict, prefix: str = "") -> dict[str, float]:
    """Flat `a/b` keys with numeric values only; a declared metric's interval `x_ci` becomes
    `x_ci_low` and `x_ci_high`."""
    flat: dict[str, float] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_metrics(value, f"{name}/"))
        elif (
            key in INTERVALS
            and isinstance(value, list | tuple)
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
        # a run never fails because W&B is unreachable: the configured mode, then offline
        for attempt in dict.fromkeys((wandb_mode(cfg.get("mode")), "offline")):
            try:
                return wandb_logger(cfg, run_dir, run_name, group, attempt)
            except Exception as exc:
                log.warning("W&B (%s mode) is unavailable: %s", attempt, exc)
        log.warning("continuing without W&B; metrics and records are in %s", run_dir)
        return None
    raise ValueError(f"unknown logger kind {kind!r}")


def wandb_project(cfg: dict) -> dict:
    """The W&B project and entity of a logger config (WANDB_ENTITY wins)."""
    return {
        "project": cfg.get("project", "sycophancy"),
        "entity": os.environ.get("WANDB_ENTITY") or cfg.get("entity"),
    }


def wandb_logger(cfg: dict, run_dir: Path, run_name: str, group: str | None, mode: str):
    """Lightning's W&B logger with its run started now, so an unreachable server shows up here and
    not in the middle of the job (offline runs: `wandb sync <run_dir>/wandb/offline-run-*`)."""
    import wandb
    from lightning.pytorch.loggers import WandbLogger

    logger = WandbLogger(
        **wandb_project(cfg),
        name=run_name,
        group=group,
        save_dir=str(run_dir),
        mode=mode,
        tags=list(cfg.get("tags") or []),
        settings=wandb.Settings(init_timeout=float(cfg.get("init_timeout", 30))),
    )
    logger.experiment  # noqa: B018 (starts the run)
    return logger


def is_wandb(logger) -> bool:
    """Whether the logger is Lightning's W&B logger."""
    return type(logger).__name__ == "WandbLogger"


def table_rows(records: list[dict]) -> tuple[list[str], list[list]]:
    """Columns and rows of per-example records for a W&B table (nested values as JSON text)."""
    columns = list(dict.fromkeys(k for rec in records for k in rec))
    rows = [
        [
            json.dumps(v, sort_keys=True) if isinstance(v, dict | list | tuple) else v
            for v in (rec.get(c) for c in columns)
        ]
        for rec in records
    ]
    return columns, rows


def log_examples(logger, records: list[dict], key: str = "examples") -> None:
    """Log the per-example records as a W&B table (other loggers: they are in examples.jsonl)."""
    if not is_wandb(logger) or not records:
        return
    try:
        columns, rows = table_rows(records)
        logger.log_table(key, columns=columns, data=rows)
    except Exception as exc:
        log.warning("logging the examples table to W&B failed (%s)", exc)


def finish(logger, status: str = "success") -> None:
    """Flush and close a logger with the run's status ("success" or "failed"); for W&B also end the
    run, marked failed when the job failed, so the next job starts its own."""
    if logger is None:
        return
    try:
        logger.finalize(status)
        if is_wandb(logger):
            import wandb

            wandb.finish(exit_code=0 if status == "success" else 1)
    except Exception as exc:
        log.warning("closing the logger failed (%s)", exc)


def log_report(cfg: dict | None, root: Path, group: str | None, written: dict[str, Path]) -> None:
    """Upload a sweep report (results table and PNG plots) as a W&B run of job type "report" in the
    sweep's group; does nothing unless the sweep's logger is W&B, and never raises."""
    if (cfg or {}).get("kind") != "wandb":
        return
    try:
        import csv

        import wandb

        with open(written["csv"], encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
        run = wandb.init(
            **wandb_project(cfg),
            group=group,
            job_type="report",
            name=f"{group or root.name}-report",
            dir=str(root),
            mode=wandb_mode(cfg.get("mode")),
        )
        payload = {"results": wandb.Table(columns=rows[0], data=rows[1:])}
        payload.update(
            {
                name: wandb.Image(str(path))
                for name, path in written.items()
                if path.suffix == ".png"
            }
        )
        run.log(payload)
        run.finish()
    except Exception as exc:
        log.warning("uploading the report to W&B failed (%s); it is in %s", exc, root)
