"""The "Are you sure?" probe: answer, get challenged, answer again; read both ways, count the flips."""

from __future__ import annotations

import numpy as np

from sycophancy import scoring, sources
from sycophancy.errors import UserError
from sycophancy.metrics import flip_metrics, rate
from sycophancy.mitigations.prompting import context_factory
from sycophancy.probes.claims import letters
from sycophancy.probes.dialogue import (
    answer_turn,
    challenge_turn,
    check_challenges,
    choice_texts,
    first_messages,
    flat_shots,
    held_shot,
    letter_options,
    question_turn,
    second_messages,
    shuffled,
    suggested_wrong,
)
from sycophancy.prompts import renderer
from sycophancy.records import MCQuestion, PromptContext
from sycophancy.reporting.summary import cell
from sycophancy.scoring.calibration import decide, target_shares
from sycophancy.scoring.parsing import admits_mistake, parse_choice

READINGS = ("scored", "generated")
ROWS = (
    "acc_first",
    "acc_first_own",
    "acc_final",
    "flip_rate",
    "correct_to_wrong",
    "wrong_to_correct",
    "admits_mistake",
    "follows_suggestion",
)
FIRST_ANSWER = {
    "scored": "shown: the scored first letter, written into the dialogue with templates.answer",
    "generated": "shown: the first generated reply, put in the dialogue verbatim, read by the parser",
}


def run_are_you_sure(cfg: dict, lm) -> tuple[list[dict], dict, str]:
    """Records (one per question and challenge), metrics and a summary table for a loaded model."""
    probe, data_seed = cfg["probe"], int(cfg["data_seed"])
    data_cfg = {**cfg["dataset"], "data_seed": data_seed}
    tpl = probe["templates"]
    challenges = check_challenges(list(probe.get("challenges") or ["plain"]), tpl)
    reading = probe.get("answer_reading", "scored")
    if reading not in READINGS:
        raise UserError(
            f"probe.answer_reading={reading!r} is not known; choose scored or generated."
        )
    method = probe.get("calibration") or "none"
    if method not in ("none", "balanced"):
        raise UserError(
            f"probe.calibration={method!r} is not available for are_you_sure; use none or balanced."
        )
    if data_cfg.get("kind", "multiple_choice") != "multiple_choice":
        raise UserError(
            f"probe=are_you_sure needs a multiple-choice data set, and dataset={data_cfg['name']} is "
            "not one; use dataset=arithmetic_mc, dataset=mmlu or dataset=bigbench."
        )
    questions = sources.load_multiple_choice(data_cfg, probe.get("split") or "validation")
    if probe.get("shuffle_choices", True):
        questions = [shuffled(q, data_seed) for q in questions]
    topic = str(probe.get("topic") or data_cfg.get("topic") or data_cfg["name"])
    context = mc_context(cfg, data_cfg, topic, challenges[0])
    render = renderer(lm.tokenizer, bool(cfg["model"].get("chat_template", lm.chat)))
    contexts = [context(q.id) for q in questions]

    q_texts = [question_turn(q, tpl) for q in questions]
    first_prompts = [render(first_messages(t, c)) for t, c in zip(q_texts, contexts, strict=True)]
    first = read_turn(
        lm, first_prompts, questions, ["first"] * len(questions), probe, method, "turn 1"
    )

    dialogue = challenge_dialogues(questions, first, challenges, reading, tpl, topic, data_seed)
    final_prompts = [
        render(second_messages(q_texts[i], a, c, contexts[i]))
        for i, a, c in zip(dialogue["index"], dialogue["answer"], dialogue["text"], strict=True)
    ]
    final_qs = [questions[i] for i in dialogue["index"]]
    final = read_turn(lm, final_prompts, final_qs, dialogue["challenge"], probe, method, "turn 2")
    dialogue["admits"] = [admits_mistake(r) for r in final["replies"]]

    records = [record(questions, first, final, dialogue, j) for j in range(len(final_prompts))]
    by_challenge = {
        kind: challenge_metrics(questions, first, final, dialogue, kind) for kind in challenges
    }
    primary = by_challenge[challenges[0]]
    metrics = {
        "challenge": challenges[0],
        "answer_reading": reading,
        "headline_reading": reading,  # the top-level rates are this reading's
        "first_answer": FIRST_ANSWER[reading],  # what "first" means in every reading's rates
        "calibration": method,
        **primary[reading],
        **{r: primary[r] for r in READINGS},
        **{k: v for k, v in primary.items() if k.startswith("readings_agree_first")},
        "by_challenge": by_challenge,
        "offsets": {**first["offsets"], **final["offsets"]},
        "decision_target": {**first["decision_target"], **final["decision_target"]},
    }
    return records, metrics, summary_table(by_challenge, reading)


def challenge_dialogues(
    questions: list[MCQuestion],
    first: dict,
    challenges: list[str],
    reading: str,
    templates: dict,
    topic: str,
    data_seed: int,
) -> dict[str, list]:
    """Per question and challenge: the question index, the assistant turn, the option it states
    (`shown`, None when the parser read none), the challenge text."""
    out: dict[str, list] = {
        "index": [],
        "challenge": [],
        "suggested": [],
        "answer": [],
        "shown": [],
        "text": [],
    }
    for kind in challenges:
        for i, q in enumerate(questions):
            suggested = suggested_wrong(q, data_seed) if kind == "suggest_wrong" else None
            answer = (
                answer_turn(q, first["scored"][i], templates)
                if reading == "scored"
                else first["replies"][i]
            )
            out["index"].append(i)
            out["challenge"].append(kind)
            out["suggested"].append(suggested)
            out["answer"].append(answer)
            out["shown"].append(first[reading][i])
            out["text"].append(challenge_turn(kind, q, templates, topic, suggested))
    return out


def mc_context(cfg: dict, data_cfg: dict, topic: str, kind: str):
    """The mitigation's prompt context; icl shots are train-split dialogues that keep the answer."""
    mitigation, probe = cfg["mitigation"], cfg["probe"]
    pool = None
    if mitigation.get("kind") == "icl" and int(mitigation.get("k", 0)) > 0:
        pool_cfg = {**data_cfg, "limit": mitigation.get("pool_size")}
        train = sources.load_multiple_choice(pool_cfg, "train")
        data_seed = int(cfg["data_seed"])
        if probe.get("shuffle_choices", True):
            train = [shuffled(q, data_seed) for q in train]
        pool = [held_shot(q, probe["templates"], topic, kind, data_seed) for q in train]
    factory = context_factory(mitigation, pool, int(cfg["data_seed"]))

    def context(question_id: str) -> PromptContext:
        ctx = factory(question_id)
        return PromptContext(system=ctx.system, shots=flat_shots(ctx.shots))

    return context


def read_turn(
    lm,
    prompts: list[str],
    questions: list[MCQuestion],
    groups: list[str],
    probe: dict,
    method: str,
    label: str,
) -> dict:
    """Both readings of one turn: letter log-probs decided per group, and parsed greedy replies."""
    batch = int(probe.get("batch_size", 16))
    prefix = str(probe.get("score_prefix", ""))
    ks = [len(q.choices) for q in questions]
    scores: list[np.ndarray] = [np.empty(0)] * len(prompts)
    for k in sorted(set(ks)):
        idx = [i for i, kk in enumerate(ks) if kk == k]
        block = scoring.score_options(
            lm,
            [prompts[i] for i in idx],
            letter_options(k, prefix),
            batch,
            progress=f"score {label} (k={k})",
        )
        for i, row in zip(idx, block, strict=True):
            scores[i] = row
    scored, offsets, targets = decide_by_group(
        scores,
        [f"{g}/k={k}" for g, k in zip(groups, ks, strict=True)],
        method,
        [q.answer for q in questions],
        probe.get("decision_target", "gold"),
    )
    replies = scoring.generate(
        lm,
        prompts,
        max_new_tokens=int(probe.get("max_new_tokens", 32)),
        batch_size=batch,
        progress=f"generate {label}",
    )
    generated = [
        parse_choice(
            r, tuple(letter_options(len(q.choices))), choice_texts(q, probe["templates"])[1]
        )
        for r, q in zip(replies, questions, strict=True)
    ]
    return {
        "prompts": prompts,
        "scores": scores,
        "scored": scored,
        "replies": replies,
        "generated": generated,
        "offsets": offsets,
        "decision_target": targets,
    }


def decide_by_group(
    scores: list[np.ndarray], groups: list[str], method: str, golds: list[int], target: str = "gold"
) -> tuple[list[int], dict[str, dict], dict[str, dict]]:
    """Chosen option per row, deciding each group (turn, challenge, number of choices) alone.

    balanced matches each group's letter shares to `target` (gold: the letters of its questions'
    right answers); returns the choices, and per group the offsets and target shares used.
    """
    chosen = [0] * len(scores)
    offsets: dict[str, dict] = {}
    targets: dict[str, dict] = {}
    for group in dict.fromkeys(groups):
        idx = [i for i, g in enumerate(groups) if g == group]
        block = np.stack([scores[i] for i in idx])
        shares = target_shares([golds[i] for i in idx], block.shape[1], target)
        if method == "balanced" and shares.max() == 1.0:
            raise UserError(
                f"Every question in group '{group}' has its answer at the same letter, so "
                "calibration=balanced with decision_target=gold would be right by construction. "
                "Use probe.calibration=none, probe.shuffle_choices=true, or more questions."
            )
        cols, off = decide(block, method, shares=shares)
        if method != "none":
            offsets[group] = dict(zip(letters(len(off)), map(float, off), strict=True))
            targets[group] = dict(zip(letters(len(off)), map(float, shares), strict=True))
        for i, col in zip(idx, cols, strict=True):
            chosen[i] = int(col)
    return chosen, offsets, targets


def challenge_metrics(
    questions: list[MCQuestion], first: dict, final: dict, dialogue: dict, kind: str
) -> dict:
    """Scored and generated metrics, and first-turn agreement of the readings, for one challenge.

    Both readings measure flips against the answer the dialogue showed (`dialogue["shown"]`), the
    only first answer the model saw; `acc_first_own` is each reading's own first-turn accuracy.
    """
    rows = [j for j, k in enumerate(dialogue["challenge"]) if k == kind]
    qs = [dialogue["index"][j] for j in rows]
    gold = [questions[i].answer for i in qs]
    out: dict = {}
    for reading in READINGS:
        out[reading] = {
            **flip_metrics(
                [dialogue["shown"][j] for j in rows],
                [final[reading][j] for j in rows],
                gold,
                admits=[dialogue["admits"][j] for j in rows],
                suggested=[dialogue["suggested"][j] for j in rows],
            ),
            **own_first_accuracy([first[reading][i] for i in qs], gold),
        }
    read = [i for i in qs if first["generated"][i] is not None]
    agree = rate([first["scored"][i] == first["generated"][i] for i in read])
    out["readings_agree_first"] = agree["value"]  # over first replies the parser read
    out["readings_agree_first_n"], out["readings_agree_first_ci"] = agree["n"], agree["ci"]
    return out


def own_first_accuracy(answers: list[int | None], gold: list[int]) -> dict:
    """A reading's own first-turn accuracy over its read answers, shown in the dialogue or not."""
    stat = rate([a == g for a, g in zip(answers, gold, strict=True) if a is not None])
    return {
        "acc_first_own": stat["value"],
        "acc_first_own_n": stat["n"],
        "acc_first_own_ci": stat["ci"],
        "n_unparsed_first_own": sum(a is None for a in answers),
    }


def record(questions: list[MCQuestion], first: dict, final: dict, dialogue: dict, j: int) -> dict:
    """One JSON record: the question, both turns' prompts, scores, replies and parsed answers."""
    i = dialogue["index"][j]
    q = questions[i]
    return {
        "question_id": q.id,
        "challenge": dialogue["challenge"][j],
        "question": q.question,
        "choices": list(q.choices),
        "gold": q.answer,
        "suggested": dialogue["suggested"][j],
        "first": turn_record(first, i, q),
        "assistant_turn": dialogue["answer"][j],
        "shown_answer": dialogue["shown"][j],
        "challenge_text": dialogue["text"][j],
        "final": {**turn_record(final, j, q), "admits_mistake": dialogue["admits"][j]},
    }


def turn_record(turn: dict, i: int, q: MCQuestion) -> dict:
    """One turn of a record: prompt, letter scores, both readings and their correctness."""
    gold = q.answer
    return {
        "prompt": turn["prompts"][i],
        "scores": dict(zip(letters(len(q.choices)), map(float, turn["scores"][i]), strict=True)),
        "scored": turn["scored"][i],
        "reply": turn["replies"][i],
        "generated": turn["generated"][i],
        "correct_scored": turn["scored"][i] == gold,
        "correct_generated": turn["generated"][i] == gold,
    }


def summary_table(by_challenge: dict[str, dict], headline: str) -> str:
    """Metrics (rows) by reading (columns, the headline starred), each rate with its own n; one
    block per challenge."""
    blocks = []
    for kind, result in by_challenge.items():
        heads = [f"challenge={kind}", *(f"{r}{'*' if r == headline else ''}" for r in READINGS)]
        body = [
            [key] + [f"{cell(result[r], key)} n={result[r][f'{key}_n']}" for r in READINGS]
            for key in ROWS
            if key in result["scored"]
        ]
        body.append(
            ["n / unparsed first / final"]
            + [
                " / ".join(str(result[r][k]) for k in ("n", "n_unparsed_first", "n_unparsed_final"))
                for r in READINGS
            ]
        )
        widths = [max(len(row[c]) for row in [heads, *body]) for c in range(3)]
        lines = [
            "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
            for row in [heads, *body]
        ]
        lines.insert(1, "  ".join("-" * w for w in widths))
        blocks.append("\n".join(lines))
    note = (
        f"* headline (answer_reading={headline}). first: the answer the dialogue showed;"
        " acc_first_own: the reading's own."
    )
    return "\n\n".join([*blocks, note])
