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
from sycophancy.probes.registry import get_probe
from sycophancy.reporting.tables import render_tables
from sycophancy.reporting.tracking import finish, flatten_metrics, log_examples, make_logger
from sycophancy.runs.jobs import prepare, run_group, run_name
from sycophancy.scoring.limits import set_max_length

log = logging.getLogger(__name__)


def load_lm(cfg: dict, mitigation: Mitigation) -> LoadedModel:
    """The model of the run as the mitigation presents it (e.g. a trained adapter attached)."""
    lm = set_max_length(models.load_model(cfg["model"]), cfg["model"].get("max_length"))
    return mitigation.wrap(cfg, lm)


def evaluate(cfg: DictConfig) -> float:
    """Measure a model's sycophancy on a probe; write config, metrics and records; return the
    probe's headline metric."""
    probe = get_probe(OmegaConf.select(cfg, "probe.kind"))  # the kinds before their settings
    mitigation = get_mitigation(OmegaConf.select(cfg, "mitigation.kind"))
    plain, run_dir = prepare(cfg, schemas={"probe": probe.schema, "mitigation": mitigation.schema})
    probe.check(plain)  # refuse bad settings before the model loads
    mitigation.check(plain)
    name = run_name(plain)
    started = time.time()
    logger = make_logger(plain.get("logger"), run_dir, name, run_group(plain))
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
