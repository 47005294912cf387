"""Score an opinion probe set with a model and turn the answers into records and metrics."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from sycophancy.errors import UserError
from sycophancy.metrics import opinion_metrics
from sycophancy.prompts import build_messages
from sycophancy.records import ProbeItem, PromptContext
from sycophancy.scoring.calibration import METHODS, decide, target_shares
from sycophancy.scoring.parsing import parse_choice


def render_items(
    items: list[ProbeItem], render: Callable, context: Callable[[str], PromptContext]
) -> list[str]:
    """The exact model input for each item under a mitigation's prompt context."""
    texts = []
    for item in items:
        ctx = context(item.example_id)
        texts.append(render(build_messages(item.user_text, system=ctx.system, shots=ctx.shots)))
    return texts


def columns(items: list[ProbeItem]) -> list[str]:
    """The option strings shared by all items, in a fixed (sorted) column order."""
    names = sorted({opt for item in items for opt in item.options})
    if any(sorted(item.options) != names for item in items):
        raise ValueError("items of one probe must share their option strings")
    return names


def to_columns(items: list[ProbeItem], scores: np.ndarray, names: list[str]) -> np.ndarray:
    """Reorder each item's scores from display order into the shared column order."""
    out = np.empty((len(items), len(names)), dtype=np.float64)
    for row, item in enumerate(items):
        for pos, opt in enumerate(item.options):
            out[row, names.index(opt)] = scores[row, pos]
    return out


def decision_targets(items: list[ProbeItem], target: str) -> dict[str, dict[str, float]]:
    """The balanced method's target share per option column, condition by condition (see TARGETS)."""
    names = columns(items)
    out = {}
    for cond in sorted({item.condition for item in items}):
        golds = [names.index(it.options[it.gold]) for it in items if it.condition == cond]
        shares = target_shares(golds, len(names), target)
        out[cond] = dict(zip(names, map(float, shares), strict=True))
    return out


def one_answer_conditions(targets: dict[str, dict[str, float]]) -> list[str]:
    """Conditions whose target puts every decision on one option."""
    return [cond for cond, shares in targets.items() if max(shares.values()) == 1.0]


def decisions_by_method(
    items: list[ProbeItem],
    scores: np.ndarray,
    cf_items: list[ProbeItem],
    cf_scores: np.ndarray | None,
    target: str = "gold",
    primary: str = "balanced",
) -> tuple[dict[str, list[int]], dict[str, dict]]:
    """Predicted option (display index) per item for every calibration method, condition by condition.

    `balanced` matches each condition's decision shares to `target` (see decision_targets). When
    a condition's gold answers are all one option that is meaningless (right by construction): it
    is left out, and a UserError is raised if `primary`, the method the run reports, needs it.
    """
    names = columns(items)
    targets = decision_targets(items, target)
    methods = list(METHODS)
    single = one_answer_conditions(targets)
    if single:
        has_primary = primary == "none" or (primary == "contextual" and bool(cf_items))
        if not has_primary:
            raise UserError(
                f"Every item of condition '{single[0]}' has the same gold answer, so decisions "
                "matched to the gold answers' frequencies (calibration=balanced, "
                "decision_target=gold) would be right by construction. The probe set has too few "
                "or one-sided examples: use probe.calibration=none or contextual, or more data "
                "(a larger dataset.limit)."
            )
        methods.remove("balanced")
    preds = {m: [0] * len(items) for m in methods}
    offsets: dict[str, dict] = {m: {} for m in methods}
    for cond in sorted({item.condition for item in items}):
        rows = [i for i, item in enumerate(items) if item.condition == cond]
        cond_scores = to_columns([items[i] for i in rows], scores[rows], names)
        cf_rows = [i for i, item in enumerate(cf_items) if item.condition == cond]
        cf = None
        if cf_scores is not None and cf_rows:
            cf = to_columns([cf_items[i] for i in cf_rows], cf_scores[cf_rows], names)
        shares = np.array([targets[cond][name] for name in names])
        for method in methods:
            if method == "contextual" and cf is None:
                continue
            cols, off = decide(cond_scores, method, cf, shares)
            offsets[method][cond] = dict(zip(names, map(float, off), strict=True))
            for i, col in zip(rows, cols, strict=True):
                preds[method][i] = items[i].options.index(names[col])
    available = {m: p for m, p in preds.items() if offsets[m]}
    return available, {m: o for m, o in offsets.items() if o}


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
