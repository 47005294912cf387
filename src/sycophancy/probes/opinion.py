"""The opinion probes (Wei et al., 2023): each example without an opinion, with a wrong and with a
right one; scored, decided per condition and measured (kinds opinion and opinion_label)."""

from __future__ import annotations

import math

import numpy as np

from sycophancy import scoring, sources
from sycophancy.errors import UserError
from sycophancy.metrics import opinion_metrics
from sycophancy.metrics.table import metric_names
from sycophancy.mitigations.base import Context, Monitor, Shot
from sycophancy.models import LoadedModel
from sycophancy.probes.base import (
    ProbeResult,
    Table,
    TrainableProbe,
    TrainingData,
    dataset_config,
    model_renderer,
)
from sycophancy.probes.claims import check_opinion_axes
from sycophancy.probes.probe_sets import (
    build_probe_set,
    decision_method,
    items_for,
    probe_conditions,
)
from sycophancy.probes.training_items import (
    build_train_items,
    checked_method,
    validation_items,
    validation_subset,
    with_content_free,
)
from sycophancy.prompts import render_items
from sycophancy.records import ProbeItem, PromptContext
from sycophancy.schema import OpinionProbeSchema
from sycophancy.scoring.decisions import decision_targets, decisions_by_method
from sycophancy.scoring.parsing import parse_choice

SUMMARY_ROWS = metric_names("opinion", summary=True)


def per_example_outcomes(items: list[ProbeItem], preds: list[int | None]) -> list[dict]:
    """One row per example: under each condition whether the reply was parsed, was right and sided
    with the user (an unparsed reply, None, is neither right nor on the user's side)."""
    by_example: dict[str, dict] = {}
    for item, pred in zip(items, preds, strict=True):
        row = by_example.setdefault(item.example_id, {})
        row[f"parsed_{item.condition}"] = pred is not None
        row[f"correct_{item.condition}"] = pred == item.gold
        if item.user_option is not None:
            row[f"sides_with_user_{item.condition}"] = pred == item.user_option
    return [by_example[k] for k in by_example]


def metrics_for(
    items: list[ProbeItem], preds: list[int | None], seed: int, population: str = "all prompts"
) -> dict:
    """Opinion metrics for one set of predictions, naming the population its rates count."""
    return {"population": population, **opinion_metrics(per_example_outcomes(items, preds), seed)}


def score_probe(
    lm, items, texts, probe: dict, scorer
) -> tuple[np.ndarray | None, list[str] | None]:
    """Option log-probs (logprob scoring) or generated replies (generate scoring) for all items."""
    if probe.get("scoring", "logprob") == "generate":
        replies = scorer.generate(
            lm,
            texts,
            max_new_tokens=int(probe.get("max_new_tokens", 8)),
            batch_size=int(probe.get("batch_size", 16)),
            progress="generate",
        )
        return None, replies
    scores = scorer.score_options(
        lm,
        texts,
        [list(item.options) for item in items],
        batch_size=int(probe.get("batch_size", 16)),
        progress="score",
    )
    return scores, None


def evaluate_items(
    lm, probe_set, context, render, probe: dict, scorer, seed: int
) -> tuple[list[dict], dict]:
    """Records (one per prompt) and metrics per decision method for an opinion probe set."""
    items, target = probe_set.items, probe.get("decision_target", "gold")
    texts = render_items(items, render, context)
    scores, replies = score_probe(lm, items, texts, probe, scorer)
    if replies is not None:
        preds = {
            "generate": [
                parse_choice(r, it.options, it.option_texts)
                for r, it in zip(replies, items, strict=True)
            ]
        }
        offsets: dict = {}
    else:
        cf_scores = None
        if probe_set.content_free:
            cf_texts = render_items(probe_set.content_free, render, context)
            cf_scores = scorer.score_options(
                lm,
                cf_texts,
                [list(it.options) for it in probe_set.content_free],
                batch_size=int(probe.get("batch_size", 16)),
                progress="content-free",
            )
        preds, offsets = decisions_by_method(
            items,
            scores,
            probe_set.content_free,
            cf_scores,
            target,
            probe.get("calibration", "balanced"),
        )
    population = "all prompts" if replies is None else "parsed replies"
    metrics = {method: metrics_for(items, p, seed, population) for method, p in preds.items()}
    records = []
    for i, item in enumerate(items):
        rec = {
            "example_id": item.example_id,
            "condition": item.condition,
            "prompt": texts[i],
            "options": list(item.options),
            "gold": item.gold,
            "user_option": item.user_option,
            "prediction": {m: p[i] for m, p in preds.items()},
            "correct": {m: p[i] == item.gold for m, p in preds.items()},
            **item.meta,
        }
        if scores is not None:
            rec["scores"] = dict(zip(item.options, map(float, scores[i]), strict=True))
        if replies is not None:
            rec["reply"] = replies[i]
        records.append(rec)
    targets = decision_targets(items, target) if "balanced" in offsets else {}
    return records, {"metrics": metrics, "offsets": offsets, "decision_target": targets}


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


class OpinionProbe(TrainableProbe):
    """The claim probe (`opinion`) and the direct task question (`opinion_label`), told the user's
    opinion or not; train.py trains against either."""

    headline_metric = "alignment_wrong"
    training_metric = "alignment_wrong_filtered"
    schema = OpinionProbeSchema

    def check(self, cfg: dict) -> None:
        """The decision method, the conditions, the persona and the opinion strength are usable."""
        decision_method(cfg["probe"])
        probe_conditions(cfg["probe"])
        check_opinion_axes(cfg["probe"])

    def shots(self, cfg: dict, limit: int | None) -> list[Shot]:
        """One (user turn with a random opinion, correct answer) exchange per train example."""
        data_cfg = dataset_config(cfg)
        train = sources.load_classification({**data_cfg, "limit": limit}, "train")
        items = items_for(train, data_cfg, cfg["probe"], int(cfg["data_seed"]), ("random",))
        return [((item.user_text, item.option_texts[item.gold]),) for item in items]

    def scored(self, cfg: dict, lm: LoadedModel, context: Context) -> tuple[list[dict], dict]:
        """Records and metrics per decision method on the validation split."""
        data_cfg = dataset_config(cfg)
        data = sources.load_classification(data_cfg, "validation")
        probe, data_seed = cfg["probe"], int(cfg["data_seed"])
        probe_set = build_probe_set(data, data_cfg, probe, data_seed)
        render = model_renderer(cfg, lm)
        return evaluate_items(lm, probe_set, context, render, probe, scoring, data_seed)

    def run(self, cfg: dict, lm: LoadedModel, context: Context) -> ProbeResult:
        """The headline method's metrics, every method's, and the table of them all."""
        records, result = self.scored(cfg, lm, context)
        metrics = headline(result, decision_method(cfg["probe"]))
        metrics["by_method"] = result["metrics"]
        metrics["offsets"] = result["offsets"]
        metrics["decision_target"] = result["decision_target"]
        table = Table(
            "decision_methods", result["metrics"], SUMMARY_ROWS, primary=metrics["calibration"]
        )
        return ProbeResult(records, metrics, [table], self.headline(metrics))

    def training_config(self, cfg: dict) -> dict:
        """Contextual calibration scores content-free examples even where train.yaml sets none."""
        return {**cfg, "probe": with_content_free(cfg["probe"])}

    def check_training(self, cfg: dict) -> str:
        """The none and wrong conditions are probed, and the filter can decide."""
        return checked_method(cfg)

    def measure(self, cfg: dict, lm: LoadedModel, context: Context) -> ProbeResult:
        """The headline method's metrics on the validation split."""
        records, result = self.scored(cfg, lm, context)
        metrics = headline(result, decision_method(cfg["probe"]))
        return ProbeResult(records, metrics, [], float(metrics.get(self.training_metric, math.nan)))

    def training_data(self, cfg: dict, lm: LoadedModel) -> TrainingData:
        """Random-opinion items from the train splits, filtered as the run decides; validation items."""
        render = model_renderer(cfg, lm)
        items, kept = build_train_items(cfg, lm, render, decision_method(cfg["probe"]))
        return TrainingData(items, validation_items(cfg, render), kept)

    def monitor(self, cfg: dict, lm: LoadedModel) -> Monitor:
        """The run's decision method on a small validation subset, without the mitigation's prompt
        context; only contextual calibration scores content-free prompts."""
        method = decision_method(cfg["probe"])
        data, data_cfg = validation_subset(cfg)
        probe = (
            cfg["probe"] if method == "contextual" else {**cfg["probe"], "content_free_examples": 0}
        )
        probe_set = build_probe_set(data, data_cfg, probe, int(cfg["data_seed"]))
        render = model_renderer(cfg, lm)

        def measure(current: LoadedModel) -> dict:
            _, result = evaluate_items(
                current, probe_set, lambda _: PromptContext(), render, probe, scoring, 0
            )
            return headline(result, method)

        return measure
