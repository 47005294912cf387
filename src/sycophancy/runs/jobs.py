"""Run folders: the resolved config, fail-fast checks, run names and the CLI error boundary."""

from __future__ import annotations

import functools
import gc
import logging
import os
import sys
import time
import traceback
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from sycophancy.errors import UserError
from sycophancy.files import ERROR_FILE, write_text
from sycophancy.runs.noise import quiet_third_party
from sycophancy.schema import check_run_config

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


def prepare(
    cfg: DictConfig, write: bool = True, schemas: dict[str, type | None] | None = None
) -> tuple[dict, Path]:
    """Check required values and types (`schemas`: the probe's and mitigation's, by section),
    resolve the config to plain data and write it into the run folder (`write=False`: a
    data-parallel worker, which leaves the folder to rank 0)."""
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise UserError(
            f"Required config values are not set: {', '.join(missing)}. Give them on the command "
            f"line, e.g. `{missing[0]}=...`."
        )
    plain = OmegaConf.to_container(cfg, resolve=True)
    check_run_config(plain, schemas)
    run_dir = Path(
        plain.get("output_dir")
        or hydra_output_dir()
        or Path("outputs") / time.strftime("%Y-%m-%d/%H-%M-%S")
    )
    if write:
        refuse_finished_folder(run_dir)
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / ERROR_FILE).unlink(missing_ok=True)  # a failed or interrupted run's, stale
            write_text(run_dir / "config.yaml", OmegaConf.to_yaml(OmegaConf.create(plain)))
        except OSError as exc:
            raise FolderInUse(
                f"The run folder {run_dir} cannot be written ({exc.strerror or exc}). Give "
                "output_dir=<a folder you can write> (or leave it unset: outputs/<date>/<time>)."
            ) from None
    return plain, run_dir


def join_main_folder(own: Path | None, main: Path | None, rank: int) -> Path | None:
    """Move the folder Hydra made for data-parallel rank `rank` (its .hydra/ and log) into rank 0's
    as `.rank<N>`, so a run leaves one folder; kept where it is if it is rank 0's or rank 0's is
    not on this machine's disk. Returns where it is now."""
    if own is None or main is None or own.resolve() == main.resolve() or not main.is_dir():
        return own
    target = main / f".rank{rank}"
    os.replace(own, target)
    return target


RESULTS = ("metrics.json", "examples.jsonl")  # a folder holding one of these is a finished run's


class FolderInUse(UserError):
    """The run folder holds another run's results or cannot be written (no error.txt there)."""

    record = False


def refuse_finished_folder(run_dir: Path) -> None:
    """Refuse a run folder that already holds a finished run's results: two runs' files would mix
    (a failed or interrupted run's folder may be reused, e.g. to resume into it)."""
    found = [name for name in RESULTS if (run_dir / name).exists()]
    if found:
        raise FolderInUse(
            f"output_dir={run_dir} already holds the results of another run ({', '.join(found)}); "
            "a second run there would mix two runs' files. Give a new output_dir (or leave it "
            "unset for a fresh timestamped folder), or delete that folder first."
        )


def run_group(cfg: dict) -> str | None:
    """The W&B group: the config's `group`, else the sweep folder of a multirun job, else None."""
    if cfg.get("group"):
        return str(cfg["group"])
    if in_multirun():
        from hydra.core.hydra_config import HydraConfig

        return str(HydraConfig.get().sweep.dir)
    return None


def in_multirun() -> bool:
    """Whether the running Hydra job is one job of a multirun (False outside Hydra)."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        return HydraConfig.get().mode == RunMode.MULTIRUN
    except ValueError:
        return False


INTERRUPTED = "Interrupted (exit {code}): "  # how error.txt starts for a job stopped by a signal
_sweep_interrupted: list[int] = []  # exit codes of interrupted jobs of this process's multirun


def record_failure(exc: BaseException, job_dir: Path) -> Path:
    """Write a failed job's error (a UserError's paragraph, else the traceback) to error.txt."""
    code = getattr(exc, "exit_code", None)
    if isinstance(exc, UserError) and code is not None:
        text = INTERRUPTED.format(code=code) + f"{exc}\n"
    elif isinstance(exc, UserError):
        text = f"UserError: {exc}\n"
    else:
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return write_text(job_dir / ERROR_FILE, text)


def _restore_environment(saved: dict[str, str]) -> None:
    """Undo a job's changes to os.environ so the next job of the sweep starts from the same one."""
    for key in set(os.environ) - set(saved):
        del os.environ[key]
    os.environ.update(saved)


def _release_memory() -> None:
    """Free what a finished job left behind (cyclic garbage, cached CUDA blocks) before the next."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def cli(main):
    """Entry-point wrapper: a failure prints one paragraph and exits non-zero, with no traceback.

    A UserError exits with status 2 (an interrupted training run with 128 + the signal, 130 for
    SIGINT, 143 for SIGTERM), any other exception with 1; either way the run's folder gets an
    `error.txt` (the paragraph, or the full traceback). In a multirun the failed job returns NaN and
    the sweep goes on, unless a job was interrupted: the remaining jobs are then not run (each
    records why) and `SweepReport` lists them and exits with the signal's code.
    """

    @functools.wraps(main)
    def wrapped(*args, **kwargs):
        quiet_third_party()
        multirun = in_multirun()
        environment = dict(os.environ)  # restored after a multirun job (e.g. PL_GLOBAL_SEED)
        try:
            if multirun and _sweep_interrupted:
                raise UserError(
                    "Not run: an earlier job of this sweep was interrupted, so the sweep stopped. "
                    "Run the sweep again (finished jobs are in their folders; resume the "
                    "interrupted one with its ckpt_path)."
                )
            return main(*args, **kwargs)
        except KeyboardInterrupt:
            print(
                "error: interrupted (Ctrl-C) outside training; nothing to resume.", file=sys.stderr
            )
            sys.exit(130)
        except Exception as exc:
            code = getattr(exc, "exit_code", None)
            if multirun:
                if code is not None:
                    _sweep_interrupted.append(code)
                return _job_failed(exc)
            path = _record_single_failure(exc, args[0] if args else None)
            where = f" (details in {path})" if path else ""
            if isinstance(exc, UserError):
                print(f"error: {exc}{where}", file=sys.stderr)
                sys.exit(code if code is not None else 2)
            print(
                f"error: the run failed with {type(exc).__name__}: {exc}. This is not a problem the "
                f"run's checks could name; the traceback is in {path or 'the log above'}. Please "
                "report it with that file.",
                file=sys.stderr,
            )
            sys.exit(1)
        finally:
            if multirun:
                _restore_environment(environment)
                _release_memory()

    return wrapped


def _record_single_failure(exc: BaseException, cfg) -> Path | None:
    """error.txt in the folder of a failed single run, if it has one; None otherwise."""
    folder = None
    try:
        folder = (cfg.get("output_dir") if cfg is not None else None) or hydra_output_dir()
    except Exception:  # a config too broken to read: the message alone must do
        folder = hydra_output_dir()
    if folder is None or not getattr(exc, "record", True):
        return None
    try:
        return record_failure(exc, Path(folder))
    except OSError:
        return None


def _job_failed(exc: Exception) -> float:
    """Record a multirun job's failure in its folder and return NaN so the sweep continues."""
    job_dir = hydra_output_dir() or Path.cwd()
    path = record_failure(exc, job_dir)
    goes = "the sweep stops" if _sweep_interrupted else "the sweep goes on"
    log.error("job failed, %s (%s): %s: %s", goes, path, type(exc).__name__, exc)
    return float("nan")
