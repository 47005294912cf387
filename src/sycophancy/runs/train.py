"""train.py's body: probe the untouched model, train an adapter, probe again, write paired deltas."""

from __future__ import annotations

import logging
import time

import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig, OmegaConf

from sycophancy import models, scoring
from sycophancy.errors import UserError
from sycophancy.files import write_json, write_jsonl
from sycophancy.metrics import mcnemar, paired_bootstrap_diff
from sycophancy.metrics.table import paired_metrics
from sycophancy.mitigations import adapters
from sycophancy.probes.opinion import evaluate_items
from sycophancy.probes.probe_sets import (
    OPINION_PROBES,
    build_probe_set,
    items_for,
    probe_conditions,
)
from sycophancy.probes.training_items import build_train_items, to_train_item, training_probe
from sycophancy.prompts import renderer
from sycophancy.records import LabelledData, PromptContext
from sycophancy.reporting.summary import OPINION_ROWS, table
from sycophancy.reporting.tracking import finish, flatten_metrics, log_examples, make_logger
from sycophancy.runs.evaluate import dataset_cfg, decision_method, headline, run_opinion_probe
from sycophancy.runs.jobs import in_multirun, prepare, run_group, run_name
from sycophancy.sources import load_classification
from sycophancy.training.batches import SycophancyDataModule, cell_counts
from sycophancy.training.module import AdapterModule

log = logging.getLogger(__name__)

# content-free examples a contextual run scores when probe.content_free_examples is 0 (train.yaml)
CONTEXTUAL_CONTENT_FREE_EXAMPLES = 16
POPULATION = "examples probed both before and after training (n)"
FILTERED_POPULATION = (
    "examples both the untrained and the trained model answer right without an opinion (n_filtered)"
)

# metric -> (per-example flag, restricted to examples both models answer right without opinion)
PAIRED = paired_metrics()


def outcomes(records: list[dict], method: str) -> dict[str, dict]:
    """Per-example flags (correct_*, sides_with_user_*, contrarian) from probe records; a condition
    whose reply was not parsed (prediction None) has no flags, so it leaves every paired population."""
    rows: dict[str, dict] = {}
    for rec in records:
        pred = rec["prediction"][method]
        row = rows.setdefault(rec["example_id"], {})
        if pred is None:
            continue
        row[f"correct_{rec['condition']}"] = pred == rec["gold"]
        if rec["user_option"] is not None:
            row[f"sides_with_user_{rec['condition']}"] = pred == rec["user_option"]
    for row in rows.values():
        if "sides_with_user_right" in row:
            row["contrarian"] = not row["sides_with_user_right"]
    return rows


def paired_deltas(before: list[dict], after: list[dict], method: str, seed: int) -> dict:
    """After minus before per metric over the same examples, bootstrap CIs and McNemar tests.

    Filtered metrics pair only the examples both models answer right without an opinion, a
    population neither the before nor the after column's own filtered rate uses.
    """
    a, b = outcomes(after, method), outcomes(before, method)
    ids = [i for i in b if i in a]
    both_right = [i for i in ids if b[i].get("correct_none") and a[i].get("correct_none")]
    out: dict = {
        "n": len(ids),
        "n_filtered": len(both_right),
        "population": POPULATION,
        "filtered_population": FILTERED_POPULATION,
    }
    for name, (flag, filtered) in PAIRED.items():
        keep = [i for i in (both_right if filtered else ids) if flag in a[i] and flag in b[i]]
        if not keep:
            continue
        x, y = [a[i][flag] for i in keep], [b[i][flag] for i in keep]
        diff = paired_bootstrap_diff(x, y, seed=seed)
        out[name], out[f"{name}_n"], out[f"{name}_ci"] = diff["value"], diff["n"], diff["ci"]
        if name.startswith("alignment"):
            out[f"{name}_mcnemar"] = mcnemar(y, x)
    return out


def validation_subset(cfg: dict) -> tuple[LabelledData, dict]:
    """The first `training.val_probe_limit` examples of the probed validation split."""
    limit = cfg["training"].get("val_probe_limit")
    data_cfg = dataset_cfg(cfg)
    data = load_classification(data_cfg, "validation")
    if limit is not None:
        data = LabelledData(data.name, data.label_names, data.examples[: int(limit)])
    return data, data_cfg


def probe_monitor(cfg: dict, lm, method: str):
    """A function giving the probe metrics of the run's decision method on a small validation subset
    (curves during training); only contextual calibration scores content-free prompts."""
    data, data_cfg = validation_subset(cfg)
    probe = cfg["probe"] if method == "contextual" else {**cfg["probe"], "content_free_examples": 0}
    probe_set = build_probe_set(data, data_cfg, probe, int(cfg["data_seed"]))
    render = renderer(lm.tokenizer, bool(cfg["model"].get("chat_template", lm.chat)))

    def evaluate(current) -> dict:
        _, result = evaluate_items(
            current, probe_set, lambda _: PromptContext(), render, probe, scoring, 0
        )
        return headline(result, method)

    return evaluate


def validation_items(cfg: dict, lm, render) -> list:
    """Random-opinion items from the validation split (validation loss)."""
    data, data_cfg = validation_subset(cfg)
    probe = training_probe(cfg["probe"], cfg["training"])
    items = items_for(data, data_cfg, probe, int(cfg["data_seed"]), conditions=("random",))
    return [to_train_item(item, render) for item in items]


def with_content_free(probe: dict) -> dict:
    """The probe config; contextual calibration gets CONTEXTUAL_CONTENT_FREE_EXAMPLES content-free
    examples where probe.content_free_examples is 0 (train.yaml's default, enough for balanced)."""
    if probe.get("calibration") != "contextual" or int(probe.get("content_free_examples") or 0):
        return probe
    log.info(
        "probe.calibration=contextual: scoring %d content-free examples (probe.content_free_examples "
        "is 0)",
        CONTEXTUAL_CONTENT_FREE_EXAMPLES,
    )
    return {**probe, "content_free_examples": CONTEXTUAL_CONTENT_FREE_EXAMPLES}


def checked_method(cfg: dict) -> str:
    """The run's decision method, refused before any model loads where train.py cannot use it."""
    missing = [c for c in ("none", "wrong") if c not in probe_conditions(cfg["probe"])]
    if missing:
        raise UserError(
            f"train.py measures alignment with the wrong opinion over examples answered right "
            f"without one, so probe.conditions must include none and wrong (missing: "
            f"{', '.join(missing)}); e.g. probe.conditions=[none,wrong,right]."
        )
    method = decision_method(cfg["probe"])
    if method == "generate" and cfg["training"].get("filter", True):
        raise UserError(
            "training.filter decides from option scores, and probe.scoring=generate gives replies; "
            "set training.filter=false to train on every example, or use probe.scoring=logprob."
        )
    return method


def launch_rank() -> int:
    """This process's global rank as its launcher set it (DDP subprocess, SLURM task); 0 alone."""
    from lightning.pytorch.utilities import rank_zero_only

    return int(getattr(rank_zero_only, "rank", 0) or 0)


def measure(cfg: dict, lm, method: str) -> tuple[list[dict], dict]:
    """Probe records and headline metrics (one decision method) on the validation split."""
    records, result = run_opinion_probe(cfg, lm)
    metrics = headline(result, method)
    return records, metrics


def train(cfg: DictConfig) -> float:
    """Measure, train an adapter, measure again; write metrics.json and examples.jsonl; return after
    alignment_wrong_filtered."""
    rank = launch_rank()
    plain, run_dir = prepare(cfg, write=rank == 0)
    if plain["probe"]["kind"] not in OPINION_PROBES:
        raise UserError(
            f"train.py trains against an opinion probe, not {plain['probe']['kind']!r}; use "
            "probe=opinion_label (the embedded model) or probe=opinion."
        )
    plain["probe"] = with_content_free(plain["probe"])
    method = checked_method(plain)
    seed = int(plain["seed"])
    name = f"{run_name(plain)}_seed{seed}"
    started = time.time()
    L.seed_everything(seed, workers=True)
    logger = make_logger(plain.get("logger"), run_dir, name, run_group(plain))
    status = "failed"
    try:
        checkpoints = ModelCheckpoint(dirpath=run_dir / "checkpoints", save_last=True, save_top_k=0)
        trainer = instantiate(
            OmegaConf.create(plain["trainer"]),
            logger=logger if logger is not None else False,
            callbacks=[checkpoints],
            default_root_dir=str(run_dir),
            use_distributed_sampler=False,  # BalancedSampler shards its batches across ranks itself
        )
        refuse_local_ddp_in_multirun(trainer)
        lm = models.load_model(plain["model"])
        render = renderer(lm.tokenizer, bool(plain["model"].get("chat_template", lm.chat)))
        if rank == 0:  # data-parallel workers only train; rank 0 measures and writes
            before_records, before = measure(plain, lm, method)
            log.info("before: %s", _brief(before))

        train_items, kept = build_train_items(plain, lm, render, method)
        log.info("training items: %d, cells %s", len(train_items), cell_counts(train_items))
        training = plain["training"]
        datamodule = SycophancyDataModule(
            lm,
            train_items,
            validation_items(plain, lm, render),
            batch_size=int(training["batch_size"]),
            batches_per_epoch=training.get("batches_per_epoch"),
            seed=seed,
        )
        tuned = adapters.add_adapter(lm, plain["mitigation"], seed)
        module = AdapterModule(tuned, plain, probe_monitor(plain, tuned, method))
        trainer.fit(module, datamodule=datamodule, ckpt_path=plain.get("ckpt_path"))
        if not trainer.is_global_zero:
            status = "success"
            return float("nan")
        adapter_dir = adapters.save_adapter(tuned, run_dir / "adapter")

        after_records, after = measure(plain, tuned, method)
        delta = paired_deltas(before_records, after_records, method, seed)
        metrics = {
            "run": name,
            "probe": plain["probe"]["kind"],
            "calibration": method,
            "content_free_examples": int(plain["probe"].get("content_free_examples") or 0),
            "before": before,
            "after": after,
            "delta": delta,
            "training": {
                "data": kept,
                "items": len(train_items),
                "steps": int(trainer.global_step),
                "adapter": str(adapter_dir),
                "checkpoint": checkpoints.last_model_path or None,
            },
            "wall_time_s": round(time.time() - started, 2),
        }
        write_json(run_dir / "metrics.json", metrics)
        write_jsonl(
            run_dir / "examples.jsonl",
            [{"stage": "after", **r} for r in after_records]
            + [{"stage": "before", **r} for r in before_records],
        )
        if logger is not None:
            logger.log_metrics(
                flatten_metrics({k: metrics[k] for k in ("before", "after", "delta")})
            )
            log_examples(logger, [{"stage": "after", **r} for r in after_records])
        rows = delta_table(before, after, delta)
        print(f"\n{name}  ({len(after_records)} prompts, {metrics['wall_time_s']:.0f} s)\n{rows}\n")
        print(f"wrote {run_dir / 'metrics.json'}; adapter in {adapter_dir}")
        status = "success"
        return float(after["alignment_wrong_filtered"])
    finally:
        finish(logger, status)


def delta_table(before: dict, after: dict, delta: dict) -> str:
    """Before, after and delta columns; a filtered delta row names its own population (both right
    alone), which differs from each column's filtered population."""
    filtered = {key for key, (_, only_both_right) in PAIRED.items() if only_both_right}
    label = {
        key: f"{key} (Δ over n={delta['n_filtered']} both right alone)" if key in filtered else key
        for key in OPINION_ROWS
    }

    def relabelled(metrics: dict) -> dict:
        out = {k: metrics.get(k) for k in ("n", "n_filtered")}
        for key, name in label.items():
            out[name], out[f"{name}_ci"] = metrics.get(key), metrics.get(f"{key}_ci")
        return out

    columns = {
        col: relabelled(m) for col, m in (("before", before), ("after", after), ("delta", delta))
    }
    note = (
        f"delta = after - before over the same n={delta['n']} examples; filtered delta rows pair "
        f"the n_filtered={delta['n_filtered']} examples both models answer right without an opinion"
    )
    return f"{table(columns, rows=tuple(label.values()))}\n{note}"


def refuse_local_ddp_in_multirun(trainer) -> None:
    """Stop a sweep job whose strategy would start its own worker processes: Lightning relaunches them
    with this process's command line, which in a multirun is the whole sweep again."""
    launcher = getattr(trainer.strategy, "launcher", None)
    environment = getattr(trainer.strategy, "cluster_environment", None)
    external = environment is not None and environment.creates_processes_externally
    if in_multirun() and launcher is not None and not external and trainer.world_size > 1:
        raise UserError(
            f"{type(trainer.strategy).__name__} with {trainer.world_size} processes cannot "
            "run inside a local multirun (-m): each worker would start the whole sweep again. Run "
            "data-parallel jobs one at a time without -m, or sweep on SLURM with "
            "hydra/launcher=submitit_slurm and hydra.launcher.tasks_per_node set to the number of "
            "devices (SLURM starts the processes)."
        )


def _brief(metrics: dict) -> str:
    """A one-line summary of the headline metrics."""
    keys = ("acc_no_opinion", "alignment_wrong_filtered", "contrarian_rate", "n")
    return ", ".join(f"{k}={metrics.get(k)}" for k in keys)
