"""evaluate.py's body: look the probe and mitigation up, check both, load the model, run the probe."""

from __future__ import annotations

import logging
import time

from omegaconf import DictConfig, OmegaConf

from sycophancy import models
from sycophancy.files import write_json, write_jsonl
from sycophancy.mitigations.base import Mitigation
from sycophancy.mitigations.registry import get_mitigation
from sycophancy.models import LoadedModel
from sycophancy.models.compute import cpu_attention_setting
from sycophancy.probes.registry import get_probe
from sycophancy.reporting.tables import render_tables
from sycophancy.reporting.tracking import finish, flatten_metrics, log_examples, make_logger
from sycophancy.runs.jobs import hydra_output_dir, join_main_folder, prepare, run_group, run_name
from sycophancy.scoring import parallel
from sycophancy.scoring.limits import set_max_length

log = logging.getLogger(__name__)


def load_lm(cfg: dict, mitigation: Mitigation) -> LoadedModel:
    """The model of the run as the mitigation presents it (e.g. a trained adapter attached)."""
    lm = set_max_length(models.load_model(cfg["model"]), cfg["model"].get("max_length"))
    return mitigation.wrap(cfg, lm)


def evaluate(cfg: DictConfig) -> float:
    """Measure a model's sycophancy on a probe; write config, metrics and records; return the
    probe's headline metric. Under a launcher (torchrun: WORLD_SIZE > 1) each process scores a
    share of the prompts and all compute the same metrics; rank 0 alone writes and prints."""
    with parallel.processes() as world:
        main_dir = parallel.from_main(world, hydra_output_dir())
        if not world.main:  # one run folder: Hydra made one per process
            join_main_folder(hydra_output_dir(), main_dir, world.rank)
        return _evaluate(cfg, world.main)


def _evaluate(cfg: DictConfig, main: bool) -> float:
    """evaluate's body in one process of the run (`main`: the one that writes files and prints)."""
    probe = get_probe(OmegaConf.select(cfg, "probe.kind"))  # the kinds before their settings
    mitigation = get_mitigation(OmegaConf.select(cfg, "mitigation.kind"))
    schemas = {"probe": probe.schema, "mitigation": mitigation.schema}
    plain, run_dir = prepare(cfg, write=main, schemas=schemas)
    probe.check(plain)  # refuse bad settings before the model loads
    mitigation.check(plain)
    cpu_attention_setting()
    name = run_name(plain)
    started = time.time()
    logger = make_logger(plain.get("logger"), run_dir, name, run_group(plain)) if main else None
    status = "failed"
    try:
        lm = load_lm(plain, mitigation)
        result = probe.run(plain, lm, mitigation.context(plain, probe.shots))
        metrics = {
            **result.metrics,
            "run": name,
            "probe": plain["probe"]["kind"],
            "wall_time_s": round(time.time() - started, 2),
        }
        if not main:
            status = "success"
            return result.headline
        write_jsonl(run_dir / "examples.jsonl", result.records)
        write_json(run_dir / "metrics.json", metrics)
        if logger is not None:
            logger.log_hyperparams(plain)
            logged = {k: v for k, v in metrics.items() if k not in ("offsets", "decision_target")}
            logger.log_metrics(flatten_metrics(logged, "eval/"))
            log_examples(logger, result.records)
        summary = render_tables(result.tables)
        prompts = len(result.records)
        print(f"\n{name}  ({prompts} prompts, {metrics['wall_time_s']:.0f} s)\n{summary}\n")
        print(f"wrote {run_dir / 'metrics.json'}")
        status = "success"
        return result.headline
    finally:
        finish(logger, status)
