"""The "Are you sure?" probe: answer, get challenged, answer again; read both ways, count the flips."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sycophancy import scoring, sources
from sycophancy.errors import UserError
from sycophancy.metrics import flip_metrics, rate
from sycophancy.metrics.table import metric_names
from sycophancy.mitigations.base import Context, Shot
from sycophancy.models import LoadedModel
from sycophancy.probes.base import Probe, ProbeResult, Table, dataset_config, model_renderer
from sycophancy.probes.claims import letters
from sycophancy.probes.dialogue import (
    answer_turn,
    challenge_turn,
    check_challenges,
    choice_texts,
    first_messages,
    held_shot,
    letter_options,
    question_turn,
    second_messages,
    shuffled,
    suggested_wrong,
)
from sycophancy.records import MCQuestion
from sycophancy.schema import AreYouSureSchema
from sycophancy.scoring.calibration import decide, target_shares
from sycophancy.scoring.parsing import admits_mistake, parse_choice

READINGS = ("scored", "generated")
ROWS = metric_names("flips", summary=True)
FIRST_ANSWER = {
    "scored": "shown: the scored first letter, written into the dialogue with templates.answer",
    "generated": "shown: the first generated reply, put in the dialogue verbatim, read by the parser",
}


@dataclass(frozen=True)
class Settings:
    """The probe config's challenges (the first is the headline), first-answer reading and method."""

    challenges: list[str]
    reading: str
    method: str


def settings(cfg: dict) -> Settings:
    """The probe's settings, each refused unless usable; the data set must be multiple-choice."""
    probe, data_cfg = cfg["probe"], cfg["dataset"]
    challenges = check_challenges(list(probe.get("challenges") or ["plain"]), probe["templates"])
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
    return Settings(challenges, reading, method)


def topic_of(cfg: dict) -> str:
    """The topic the authority challenge names: probe.topic, else the data set's topic or name."""
    return str(cfg["probe"].get("topic") or cfg["dataset"].get("topic") or cfg["dataset"]["name"])


def load_questions(cfg: dict, data_cfg: dict, split: str) -> list[MCQuestion]:
    """A split's questions, their choices in a seeded order unless probe.shuffle_choices is false."""
    questions = sources.load_multiple_choice(data_cfg, split)
    if cfg["probe"].get("shuffle_choices", True):
        questions = [shuffled(q, int(cfg["data_seed"])) for q in questions]
    return questions


class AreYouSureProbe(Probe):
    """Sharma et al.'s "Are you sure?": the first answer, a challenge, the final answer; flips."""

    headline_metric = "flip_rate"
    schema = AreYouSureSchema

    def check(self, cfg: dict) -> None:
        """Challenges, answer reading, decision method and data set are usable."""
        settings(cfg)

    def shots(self, cfg: dict, limit: int | None) -> list[Shot]:
        """Train-split dialogues that keep the right answer under the headline challenge."""
        kind, data_seed = settings(cfg).challenges[0], int(cfg["data_seed"])
        templates, topic = cfg["probe"]["templates"], topic_of(cfg)
        return [
            held_shot(q, templates, topic, kind, data_seed)
            for q in load_questions(cfg, {**dataset_config(cfg), "limit": limit}, "train")
        ]

    def run(self, cfg: dict, lm: LoadedModel, context: Context) -> ProbeResult:
        """Records (one per question and challenge), metrics and one summary block per challenge."""
        chosen = settings(cfg)
        split = cfg["probe"].get("split") or "validation"
        questions = load_questions(cfg, dataset_config(cfg), split)
        first, final, dialogue = converse(cfg, lm, context, questions, chosen)
        records = [
            record(questions, first, final, dialogue, j) for j in range(len(dialogue["index"]))
        ]
        by_challenge = {
            kind: challenge_metrics(questions, first, final, dialogue, kind)
            for kind in chosen.challenges
        }
        metrics = headline_metrics(by_challenge, chosen, first, final)
        tables = summary(by_challenge, chosen.reading)
        return ProbeResult(records, metrics, tables, self.headline(metrics))


def converse(
    cfg: dict, lm: LoadedModel, context: Context, questions: list[MCQuestion], chosen: Settings
) -> tuple[dict, dict, dict]:
    """Both turns of every dialogue, each read both ways: the first turn, the challenge dialogues
    (with whether the final reply admits a mistake) and the final turn."""
    probe, data_seed, tpl = cfg["probe"], int(cfg["data_seed"]), cfg["probe"]["templates"]
    render = model_renderer(cfg, lm)
    contexts = [context(q.id) for q in questions]
    q_texts = [question_turn(q, tpl) for q in questions]
    first_prompts = [render(first_messages(t, c)) for t, c in zip(q_texts, contexts, strict=True)]
    groups = ["first"] * len(questions)
    first = read_turn(lm, first_prompts, questions, groups, probe, chosen.method, "turn 1")

    dialogue = challenge_dialogues(
        questions, first, chosen.challenges, chosen.reading, tpl, topic_of(cfg), data_seed
    )
    final_prompts = [
        render(second_messages(q_texts[i], a, c, contexts[i]))
        for i, a, c in zip(dialogue["index"], dialogue["answer"], dialogue["text"], strict=True)
    ]
    final_qs = [questions[i] for i in dialogue["index"]]
    groups = dialogue["challenge"]
    final = read_turn(lm, final_prompts, final_qs, groups, probe, chosen.method, "turn 2")
    dialogue["admits"] = [admits_mistake(r) for r in final["replies"]]
    return first, final, dialogue


def headline_metrics(by_challenge: dict, chosen: Settings, first: dict, final: dict) -> dict:
    """metrics.json: the headline challenge's rates in the shown reading at the top level, then
    both readings, every challenge, and the decision offsets and targets."""
    primary, reading = by_challenge[chosen.challenges[0]], chosen.reading
    return {
        "challenge": chosen.challenges[0],
        "answer_reading": reading,
        "headline_reading": reading,  # the top-level rates are this reading's
        "first_answer": FIRST_ANSWER[reading],  # what "first" means in every reading's rates
        "calibration": chosen.method,
        **primary[reading],
        **{r: primary[r] for r in READINGS},
        **{k: v for k, v in primary.items() if k.startswith("readings_agree_first")},
        "by_challenge": by_challenge,
        "offsets": {**first["offsets"], **final["offsets"]},
        "decision_target": {**first["decision_target"], **final["decision_target"]},
    }


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


def summary(by_challenge: dict[str, dict], headline: str) -> list[Table | str]:
    """Metrics (rows) by reading (columns, the headline starred), each rate with its own n; one
    table per challenge, then what the columns mean."""
    tables: list[Table | str] = [
        Table("readings", {r: result[r] for r in READINGS}, ROWS, f"challenge={kind}", headline)
        for kind, result in by_challenge.items()
    ]
    note = (
        f"* headline (answer_reading={headline}). first: the answer the dialogue showed;"
        " acc_first_own: the reading's own."
    )
    return [*tables, note]
