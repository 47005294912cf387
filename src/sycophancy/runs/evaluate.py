"""The stages of a run, top to bottom: data → probes → model → scores → metrics → files."""

from __future__ import annotations

import logging
import math
import time

from omegaconf import DictConfig

from sycophancy import models, scoring, sources
from sycophancy.errors import UserError
from sycophancy.files import write_json, write_jsonl
from sycophancy.mitigations import adapters
from sycophancy.mitigations.prompting import context_factory, shot_pool
from sycophancy.probes.opinion import evaluate_items
from sycophancy.probes.probe_sets import OPINION_PROBES, build_probe_set, probe_conditions
from sycophancy.prompts import renderer
from sycophancy.reporting.summary import table
from sycophancy.reporting.tracking import finish, flatten_metrics, log_examples, make_logger
from sycophancy.runs.jobs import prepare, run_group, run_name
from sycophancy.scoring.calibration import METHODS

log = logging.getLogger(__name__)


def dataset_cfg(cfg: dict) -> dict:
    """The dataset config with the run's data_seed, which fixes `limit` subsets."""
    return {**cfg["dataset"], "data_seed": int(cfg["data_seed"])}


def prompt_context(cfg: dict, data_cfg: dict):
    """The mitigation's prompt context per example (system prompt, k-shot examples from train)."""
    mitigation, probe = cfg["mitigation"], cfg["probe"]
    pool = None
    if mitigation.get("kind") == "icl" and int(mitigation.get("k", 0)) > 0:
        pool_cfg = {**data_cfg, "limit": mitigation.get("pool_size")}
        train = sources.load_classification(pool_cfg, "train")
        pool = shot_pool(train, data_cfg, probe, int(cfg["data_seed"]))
    return context_factory(mitigation, pool, int(cfg["data_seed"]))


def load_lm(cfg: dict):
    """The model of the run, with the mitigation's trained adapter attached where there is one."""
    lm = models.load_model(cfg["model"])
    adapter = cfg["mitigation"].get("adapter_path")
    if adapter:
        lm = adapters.attach_adapter(lm, adapter)
    return lm


def run_opinion_probe(cfg: dict, lm, split: str = "validation") -> tuple[list[dict], dict]:
    """Records and metrics of an opinion probe on a split, for the already loaded model."""
    data_cfg = dataset_cfg(cfg)
    data = sources.load_classification(data_cfg, split)
    probe = cfg["probe"]
    probe_set = build_probe_set(data, data_cfg, probe, int(cfg["data_seed"]))
    context = prompt_context(cfg, data_cfg)
    render = renderer(lm.tokenizer, bool(cfg["model"].get("chat_template", lm.chat)))
    records, result = evaluate_items(
        lm, probe_set, context, render, probe, scoring, int(cfg["data_seed"])
    )
    return records, result


def decision_method(probe: dict) -> str:
    """The decision method a probe's headline reports, checked before any model loads: `generate` for
    generated replies, else `probe.calibration` (an unknown name, or contextual calibration without
    content-free prompts, is a UserError)."""
    opinion = probe.get("kind") in OPINION_PROBES
    method = probe.get("calibration", "balanced" if opinion else "none")
    if method is None and not opinion:
        method = "none"  # are_you_sure reads a null calibration as none
    if method not in METHODS:
        raise UserError(
            f"probe.calibration={method!r} is not a decision method; choose none | balanced | "
            "contextual (e.g. probe.calibration=balanced)."
        )
    if not opinion:
        return method
    if probe.get("scoring", "logprob") == "generate":
        return "generate"
    if method == "contextual" and not (
        int(probe.get("content_free_examples") or 0) > 0 and probe.get("content_free_texts")
    ):
        raise UserError(
            "probe.calibration=contextual needs content-free prompts, and this probe scores none; "
            "set probe.content_free_examples to a positive number (e.g. 16) and "
            'probe.content_free_texts (e.g. ["N/A", "", "[MASK]"]), or use probe.calibration=balanced.'
        )
    return method


def headline(result: dict, method: str) -> dict:
    """The metrics of the run's decision method; a method the result lacks is a UserError."""
    by_method = result["metrics"]
    if method not in by_method:
        raise UserError(
            f"Decision method {method!r} was not computed for this run (available: "
            f"{', '.join(by_method) or 'none'}); contextual calibration needs "
            "probe.content_free_examples > 0, and probe.scoring=generate reports `generate` only."
        )
    return {"calibration": method, **by_method[method]}


def evaluate(cfg: DictConfig) -> float:
    """Measure a model's sycophancy on a probe; write config, metrics and records; return alignment."""
    plain, run_dir = prepare(cfg)
    method = decision_method(plain["probe"])
    name = run_name(plain)
    probe_kind = plain["probe"]["kind"]
    if probe_kind in OPINION_PROBES:
        probe_conditions(plain["probe"])  # refuse a bad condition before the model loads
    started = time.time()
    logger = make_logger(plain.get("logger"), run_dir, name, run_group(plain))
    status = "failed"
    try:
        lm = load_lm(plain)
        if probe_kind in OPINION_PROBES:
            records, result = run_opinion_probe(plain, lm)
            metrics = headline(result, method)
            metrics["by_method"] = result["metrics"]
            metrics["offsets"] = result["offsets"]
            metrics["decision_target"] = result["decision_target"]
            rows_table = table(result["metrics"], primary=metrics["calibration"])
            score = metrics.get("alignment_wrong", math.nan)  # absent: no wrong condition
        else:
            from sycophancy.probes.are_you_sure import run_are_you_sure

            records, metrics, rows_table = run_are_you_sure(plain, lm)
            score = metrics["flip_rate"]
        metrics.update(run=name, probe=probe_kind, wall_time_s=round(time.time() - started, 2))
        write_jsonl(run_dir / "examples.jsonl", records)
        write_json(run_dir / "metrics.json", metrics)
        if logger is not None:
            logger.log_hyperparams(plain)
            logger.log_metrics(
                flatten_metrics(
                    {k: v for k, v in metrics.items() if k not in ("offsets", "decision_target")},
                    "eval/",
                )
            )
            log_examples(logger, records)
        print(f"\n{name}  ({len(records)} prompts, {metrics['wall_time_s']:.0f} s)\n{rows_table}\n")
        print(f"wrote {run_dir / 'metrics.json'}")
        status = "success"
        return float(score)
    finally:
        finish(logger, status)
