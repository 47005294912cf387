"""Run folders: the resolved config, fail-fast checks, run names and the CLI error boundary."""

from __future__ import annotations

import functools
import logging
import sys
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from .errors import UserError
from .io import write_text

log = logging.getLogger(__name__)


def hydra_choices() -> dict[str, str]:
    """The config-group choices of the running Hydra job ({} outside Hydra)."""
    try:
        from hydra.core.hydra_config import HydraConfig

        return {k: str(v) for k, v in HydraConfig.get().runtime.choices.items() if v is not None}
    except ValueError:
        return {}


def hydra_output_dir() -> Path | None:
    """The running Hydra job's output folder, if there is one."""
    try:
        from hydra.core.hydra_config import HydraConfig

        return Path(HydraConfig.get().runtime.output_dir)
    except ValueError:
        return None


def run_name(cfg: dict) -> str:
    """model_dataset_probe_mitigation from the config choices (not from override strings)."""
    parts = [
        cfg.get(group, {}).get("name", "?") for group in ("model", "dataset", "probe", "mitigation")
    ]
    return "_".join(str(p) for p in parts)


def prepare(cfg: DictConfig) -> tuple[dict, Path]:
    """Check required values, resolve the config to plain data and write it into the run folder."""
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise UserError(
            f"Required config values are not set: {', '.join(missing)}. Give them on the command "
            f"line, e.g. `{missing[0]}=...`."
        )
    plain = OmegaConf.to_container(cfg, resolve=True)
    run_dir = Path(
        plain.get("output_dir")
        or hydra_output_dir()
        or Path("outputs") / time.strftime("%Y-%m-%d/%H-%M-%S")
    )
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text(run_dir / "config.yaml", OmegaConf.to_yaml(OmegaConf.create(plain)))
    return plain, run_dir


def cli(main):
    """Entry-point wrapper: a UserError prints one paragraph and exits with status 2, no traceback."""

    @functools.wraps(main)
    def wrapped(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except UserError as exc:
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(2)

    return wrapped
