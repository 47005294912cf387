"""The end-of-sweep Hydra callback: results table and plots in the sweep folder, failed jobs listed."""

from __future__ import annotations

import logging
import re
import sys
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from sycophancy.errors import UserError
from sycophancy.files import ERROR_FILE
from sycophancy.reporting.report import failed_jobs, report
from sycophancy.reporting.tracking import log_report

log = logging.getLogger(__name__)


class SweepReport(Callback):
    """Hydra callback: after a multirun, write the report (results table and plots) into the sweep
    folder, upload it to W&B when the sweep logs there, list the failed jobs and exit with status 1 if
    any failed."""

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        write_sweep_report(config, sweep_dir)
        failed = failed_jobs(sweep_dir)
        if not failed:
            return
        lines = [
            f"{len(failed)} job(s) of the sweep in {sweep_dir} failed; the others' results are kept:"
        ]
        lines += [f"  {path}: {message}" for path, message in failed]
        lines.append(
            f"Details in each job's {ERROR_FILE}; `python -m sycophancy.report {sweep_dir}` tabulates the rest."
        )
        print("\n".join(lines), file=sys.stderr)
        sys.exit(interrupted_code(failed) or 1)


def interrupted_code(failed: list[tuple[Path, str]]) -> int | None:
    """The exit code of an interrupted job among the failed ones (error.txt starts
    "Interrupted (exit N): "), else None."""
    for _, message in failed:
        match = re.match(r"Interrupted \(exit (\d+)\)", message)
        if match:
            return int(match.group(1))
    return None


def write_sweep_report(config: DictConfig, sweep_dir: Path) -> dict[str, Path]:
    """The end-of-sweep report; a failure here is logged and never hides the sweep's own outcome."""
    try:
        written = report(sweep_dir)
    except UserError as exc:  # no run finished: the failure list below says why
        log.warning("no report for %s: %s", sweep_dir, exc)
        return {}
    except Exception as exc:
        log.warning("writing the report for %s failed: %s", sweep_dir, exc)
        return {}
    print(f"report: {', '.join(str(p) for p in written.values())}")
    logger_cfg = OmegaConf.to_container(config.get("logger") or {}, resolve=True)
    log_report(logger_cfg, sweep_dir, config.get("group") or str(sweep_dir), written)
    return written
