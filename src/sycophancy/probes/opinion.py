"""Score an opinion probe set with a model and turn the answers into records and metrics."""

from __future__ import annotations

import numpy as np

from sycophancy.metrics import opinion_metrics
from sycophancy.prompts import render_items
from sycophancy.records import ProbeItem
from sycophancy.scoring.decisions import decision_targets, decisions_by_method
from sycophancy.scoring.parsing import parse_choice


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
