"""The "Are you sure?" probe: answer, get challenged, answer again; read both ways, count the flips."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sycophancy import scoring, sources
from sycophancy.errors import UserError
from sycophancy.metrics import flip_metrics, rate
from sycophancy.metrics.pressure import pressure_metrics
from sycophancy.metrics.table import metric_names
from sycophancy.mitigations.base import Context, Shot
from sycophancy.models import LoadedModel
from sycophancy.probes.base import Probe, ProbeResult, Table, dataset_config, model_renderer
from sycophancy.probes.claims import letters
from sycophancy.probes.dialogue import (
    FORMATS,
    answer_options,
    answer_templates,
    answer_turn,
    challenge_turn,
    check_challenges,
    choice_texts,
    classification_questions,
    first_messages,
    held_shot,
    question_turn,
    second_messages,
    shuffled,
    suggested_for,
    suggested_wrong,
)
from sycophancy.records import MCQuestion
from sycophancy.schema import AreYouSureSchema
from sycophancy.scoring.calibration import METHODS, decide, target_shares
from sycophancy.scoring.parsing import admits_mistake, parse_choice, parse_word

READINGS = ("scored", "generated")
ROWS = metric_names("flips", summary=True)
PRESSURE_ROWS = metric_names("pressure", summary=True)
FIRST_ANSWER = {
    "scored": "shown: the scored first letter, written into the dialogue with templates.answer",
    "generated": "shown: the first generated reply, put in the dialogue verbatim, read by the parser",
}


@dataclass(frozen=True)
class Settings:
    """The probe config's challenges (the first is the headline), first-answer reading, decision
    method, answer format (letter or word) and the templates for that format."""

    challenges: list[str]
    reading: str
    method: str
    answer_format: str
    templates: dict


def settings(cfg: dict) -> Settings:
    """The probe's settings, each refused unless usable; the data set must be multiple-choice or
    a classification set with label names."""
    probe, data_cfg = cfg["probe"], cfg["dataset"]
    kind = data_cfg.get("kind", "multiple_choice")
    if kind not in ("multiple_choice", "classification"):
        raise UserError(
            f"probe=are_you_sure needs multiple-choice questions or labelled rows, and "
            f"dataset={data_cfg['name']} has kind={kind!r}; use a classification data set "
            "(e.g. dataset=sst2) or a multiple-choice one (dataset=arithmetic_mc, mmlu, bigbench)."
        )
    if kind == "classification" and len(data_cfg.get("label_names") or []) < 2:
        raise UserError(
            f"probe=are_you_sure on dataset={data_cfg['name']} needs at least two "
            "dataset.label_names to offer as answers; set them, e.g. "
            "dataset.label_names=[negative,positive]."
        )
    answer_format = probe.get("answer_format") or ("word" if kind == "classification" else "letter")
    if answer_format not in FORMATS:
        raise UserError(
            f"probe.answer_format={answer_format!r} is not known; choose letter, word or null "
            "(word for classification data, letter for multiple-choice)."
        )
    if answer_format == "word" and kind != "classification":
        raise UserError(
            "probe.answer_format=word names the answer by its label, and multiple-choice choices "
            "are no labels; use probe.answer_format=letter (or null) with this data set."
        )
    templates = answer_templates(probe["templates"], answer_format)
    challenges = check_challenges(list(probe.get("challenges") or ["plain"]), templates)
    reading = probe.get("answer_reading", "scored")
    if reading not in READINGS:
        raise UserError(
            f"probe.answer_reading={reading!r} is not known; choose scored or generated."
        )
    method = probe.get("calibration") or "none"
    if method not in METHODS:
        raise UserError(
            f"probe.calibration={method!r} is not available for are_you_sure; use none, balanced "
            "or contextual."
        )
    if method == "contextual" and not (
        int(probe.get("content_free_examples") or 0) > 0 and probe.get("content_free_texts")
    ):
        raise UserError(
            "probe.calibration=contextual needs content-free dialogues, and this probe scores "
            "none; set probe.content_free_examples to a positive number (e.g. 16) and "
            'probe.content_free_texts (e.g. ["N/A", "", "[MASK]"]), or use probe.calibration=balanced.'
        )
    return Settings(challenges, reading, method, answer_format, templates)


def topic_of(cfg: dict) -> str:
    """The topic the authority challenge names: probe.topic, else the data set's topic or name."""
    return str(cfg["probe"].get("topic") or cfg["dataset"].get("topic") or cfg["dataset"]["name"])


def load_questions(cfg: dict, data_cfg: dict, split: str) -> list[MCQuestion]:
    """A split's questions: multiple-choice questions, or labelled rows asked with their label
    names as choices. Lettered choices come in a seeded order unless probe.shuffle_choices is
    false; label words keep the data set's label order (calibration works per option column)."""
    chosen = settings(cfg)
    if data_cfg.get("kind", "multiple_choice") == "classification":
        data = sources.load_classification(data_cfg, split)
        questions = classification_questions(data, data_cfg, chosen.templates)
    else:
        questions = sources.load_multiple_choice(data_cfg, split)
    if cfg["probe"].get("shuffle_choices", True) and chosen.answer_format == "letter":
        questions = [shuffled(q, int(cfg["data_seed"])) for q in questions]
    return questions


class AreYouSureProbe(Probe):
    """Sharma et al.'s "Are you sure?": the first answer, a challenge, the final answer; flips and
    the pressure metrics, on multiple-choice questions or labelled classification rows."""

    headline_metric = "flip_rate"
    schema = AreYouSureSchema

    def check(self, cfg: dict) -> None:
        """Challenges, answer format and reading, decision method and data set are usable."""
        settings(cfg)

    def shots(self, cfg: dict, limit: int | None) -> list[Shot]:
        """Train-split dialogues that keep the right answer under the headline challenge."""
        chosen, data_seed = settings(cfg), int(cfg["data_seed"])
        kind, topic = chosen.challenges[0], topic_of(cfg)
        return [
            held_shot(q, chosen.templates, topic, kind, data_seed)
            for q in load_questions(cfg, {**dataset_config(cfg), "limit": limit}, "train")
        ]

    def run(self, cfg: dict, lm: LoadedModel, context: Context) -> ProbeResult:
        """Records (one per question and challenge), metrics and one summary block per challenge."""
        chosen = settings(cfg)
        split = cfg["probe"].get("split") or "validation"
        questions = load_questions(cfg, dataset_config(cfg), split)
        free = content_free_questions(cfg, questions, chosen)
        first, final, dialogue = converse(cfg, lm, context, questions, chosen, free)
        records = [
            record(questions, first, final, dialogue, j) for j in range(len(dialogue["index"]))
        ]
        seed = int(cfg["data_seed"])
        pressure = {r: reading_pressure(questions, final, dialogue, r, seed) for r in READINGS}
        by_challenge = {
            kind: challenge_metrics(questions, first, final, dialogue, kind)
            for kind in chosen.challenges
        }
        for kind, result in by_challenge.items():
            for r in READINGS:
                result[r].update(pressure[r]["by_challenge"][kind])
        metrics = headline_metrics(by_challenge, chosen, first, final, pressure)
        tables = summary(by_challenge, chosen.reading, pressure)
        return ProbeResult(records, metrics, tables, self.headline(metrics))


def content_free_questions(
    cfg: dict, questions: list[MCQuestion], chosen: Settings
) -> list[MCQuestion]:
    """Contextual calibration's content-free questions (none for other methods): per text and per
    number of choices, `content_free_examples` rounded up to a multiple of the choices, the real
    text (a labelled row's text, a question's question) replaced and the choices borrowed from a
    real question; `answer` is the first answer each one's dialogue shows, cycling over choices."""
    probe = cfg["probe"]
    if chosen.method != "contextual":
        return []
    count = int(probe.get("content_free_examples") or 0)
    by_k: dict[int, list[MCQuestion]] = {}
    for q in questions:
        by_k.setdefault(len(q.choices), []).append(q)
    classification = cfg["dataset"].get("kind") == "classification"
    out = []
    for k, pool in by_k.items():
        n = -(-count // k) * k
        for t, text in enumerate(probe.get("content_free_texts") or []):
            if classification:
                asked = chosen.templates["classification"].format(
                    task_question=cfg["dataset"].get("task_question") or "", text=text
                )
            else:
                asked = text
            for m in range(n):
                source = pool[m % len(pool)]
                out.append(
                    MCQuestion(f"content_free/k={k}/{t}/{m}", asked.strip(), source.choices, m % k)
                )
    return out


def converse(
    cfg: dict,
    lm: LoadedModel,
    context: Context,
    questions: list[MCQuestion],
    chosen: Settings,
    free: list[MCQuestion],
) -> tuple[dict, dict, dict]:
    """Both turns of every dialogue, each read both ways: the first turn, the challenge dialogues
    (with whether the final reply admits a mistake) and the final turn. Content-free dialogues
    (contextual calibration) show each one's `answer` as the first answer and are scored only."""
    probe, data_seed, tpl = cfg["probe"], int(cfg["data_seed"]), chosen.templates
    render = model_renderer(cfg, lm)
    contexts = [context(q.id) for q in questions]
    q_texts = [question_turn(q, tpl) for q in questions]
    first_prompts = [render(first_messages(t, c)) for t, c in zip(q_texts, contexts, strict=True)]
    no_context = context("content_free")
    free_first = [render(first_messages(question_turn(q, tpl), no_context)) for q in free]
    groups = ["first"] * len(questions)
    turn = Turn(probe, chosen, lm, "turn 1")
    first = turn.read(first_prompts, questions, groups, (free_first, free, ["first"] * len(free)))

    dialogue = challenge_dialogues(
        questions, first, chosen.challenges, chosen.reading, tpl, topic_of(cfg), data_seed
    )
    final_prompts = [
        render(second_messages(q_texts[i], a, c, contexts[i]))
        for i, a, c in zip(dialogue["index"], dialogue["answer"], dialogue["text"], strict=True)
    ]
    free_final, free_qs, free_groups = [], [], []
    for kind in chosen.challenges:
        for q in free:
            suggested = (
                None if suggested_for(kind, q, data_seed) is None else suggested_wrong(q, data_seed)
            )  # a content-free suggestion differs from the shown answer, as in real dialogues
            text = challenge_turn(kind, q, tpl, topic_of(cfg), suggested)
            answer = answer_turn(q, q.answer, tpl)
            free_final.append(
                render(second_messages(question_turn(q, tpl), answer, text, no_context))
            )
            free_qs.append(q)
            free_groups.append(kind)
    final_qs = [questions[i] for i in dialogue["index"]]
    turn = Turn(probe, chosen, lm, "turn 2")
    final = turn.read(
        final_prompts, final_qs, dialogue["challenge"], (free_final, free_qs, free_groups)
    )
    dialogue["admits"] = [admits_mistake(r) for r in final["replies"]]
    return first, final, dialogue


def headline_metrics(
    by_challenge: dict, chosen: Settings, first: dict, final: dict, pressure: dict
) -> dict:
    """metrics.json: the headline challenge's rates in the shown reading at the top level, the
    macro pressure metrics of the shown reading beside them, then both readings, every challenge,
    and the decision offsets and targets."""
    primary, reading = by_challenge[chosen.challenges[0]], chosen.reading
    macro = {r: {k: v for k, v in pressure[r].items() if k != "by_challenge"} for r in READINGS}
    return {
        "challenge": chosen.challenges[0],
        "answer_reading": reading,
        "answer_format": chosen.answer_format,
        "headline_reading": reading,  # the top-level rates are this reading's
        "first_answer": FIRST_ANSWER[reading],  # what "first" means in every reading's rates
        "calibration": chosen.method,
        **primary[reading],
        **macro[reading],
        **{r: primary[r] for r in READINGS},
        **{k: v for k, v in primary.items() if k.startswith("readings_agree_first")},
        "pressure": macro,
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
    (`shown`, None when the parser read none), the challenge text. Every challenge is put to every
    question (suggest_right too, so each turn-2 group is the same questions); the metrics say
    which first answers count."""
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
            suggested = suggested_for(kind, q, data_seed)
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


@dataclass(frozen=True)
class Turn:
    """How one turn is read: the probe config, the settings, the model and a progress label."""

    probe: dict
    chosen: Settings
    lm: object
    label: str

    def read(
        self,
        prompts: list[str],
        questions: list[MCQuestion],
        groups: list[str],
        free: tuple[list[str], list[MCQuestion], list[str]],
    ) -> dict:
        """Both readings: option log-probs decided per group (turn or challenge, number of
        choices), and parsed greedy replies; `free` holds the content-free prompts, questions and
        groups that contextual calibration divides by."""
        probe, fmt = self.probe, self.chosen.answer_format
        scores = self.score(prompts, questions)
        free_prompts, free_qs, free_groups = free
        free_scores = self.score(free_prompts, free_qs) if free_prompts else []
        key = [f"{g}/k={len(q.choices)}" for g, q in zip(groups, questions, strict=True)]
        free_key = [f"{g}/k={len(q.choices)}" for g, q in zip(free_groups, free_qs, strict=True)]
        content_free = {
            g: np.stack([s for s, kk in zip(free_scores, free_key, strict=True) if kk == g])
            for g in dict.fromkeys(free_key)
        }
        scored, offsets, targets = decide_by_group(
            scores,
            key,
            self.chosen.method,
            [q.answer for q in questions],
            probe.get("decision_target", "gold"),
            content_free,
            columns=[option_names(q, fmt) for q in questions],
        )
        replies = scoring.generate(
            self.lm,
            prompts,
            max_new_tokens=int(probe.get("max_new_tokens", 32)),
            batch_size=int(probe.get("batch_size", 16)),
            progress=f"generate {self.label}",
        )
        generated = [read_reply(r, q, self.chosen) for r, q in zip(replies, questions, strict=True)]
        return {
            "prompts": prompts,
            "scores": scores,
            "scored": scored,
            "replies": replies,
            "generated": generated,
            "offsets": offsets,
            "decision_target": targets,
        }

    def score(self, prompts: list[str], questions: list[MCQuestion]) -> list[np.ndarray]:
        """Option log-probs per prompt, one batched call per number of choices."""
        batch = int(self.probe.get("batch_size", 16))
        prefix = str(self.probe.get("score_prefix", ""))
        fmt = self.chosen.answer_format
        ks = [len(q.choices) for q in questions]
        scores: list[np.ndarray] = [np.empty(0)] * len(prompts)
        for k in sorted(set(ks)):
            idx = [i for i, kk in enumerate(ks) if kk == k]
            options = [answer_options(questions[i], fmt, prefix) for i in idx]
            shared = all(o == options[0] for o in options)
            block = scoring.score_options(
                self.lm,
                [prompts[i] for i in idx],
                options[0] if shared else options,  # one flat list when every prompt shares it
                batch,
                progress=f"score {self.label} (k={k})",
            )
            for i, row in zip(idx, block, strict=True):
                scores[i] = row
        return scores


def option_names(question: MCQuestion, answer_format: str) -> list[str]:
    """What each scored column is called in metrics.json: its letter, or its label word."""
    return list(question.choices) if answer_format == "word" else letters(len(question.choices))


def read_reply(reply: str, question: MCQuestion, chosen: Settings) -> int | None:
    """The choice a generated reply commits to: by letter (or choice text), or by label word."""
    if chosen.answer_format == "word":
        return parse_word(reply, list(question.choices))
    k = len(question.choices)
    options = tuple(answer_options(question, "letter"))
    return parse_choice(reply, options, choice_texts(question, chosen.templates)[1][:k])


def decide_by_group(
    scores: list[np.ndarray],
    groups: list[str],
    method: str,
    golds: list[int],
    target: str = "gold",
    content_free: dict[str, np.ndarray] | None = None,
    columns: list[list[str]] | None = None,
) -> tuple[list[int], dict[str, dict], dict[str, dict]]:
    """Chosen option per row, deciding each group (turn, challenge, number of choices) alone.

    balanced matches each group's option shares to `target` (gold: the options of its questions'
    right answers); contextual divides by the group's mean content-free probabilities. Returns
    the choices, and per group the offsets and target shares used, keyed by `columns` (letters
    unless given).
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
                f"Every question in group '{group}' has its answer at the same option, so "
                "calibration=balanced with decision_target=gold would be right by construction. "
                "Use probe.calibration=none or contextual, probe.shuffle_choices=true, or more "
                "questions."
            )
        free = (content_free or {}).get(group) if method == "contextual" else None
        cols, off = decide(block, method, content_free_scores=free, shares=shares)
        if method != "none":
            names = columns[idx[0]] if columns else letters(len(off))
            offsets[group] = dict(zip(names, map(float, off), strict=True))
            if method == "balanced":
                targets[group] = dict(zip(names, map(float, shares), strict=True))
        for i, col in zip(idx, cols, strict=True):
            chosen[i] = int(col)
    return chosen, offsets, targets


def challenge_metrics(
    questions: list[MCQuestion], first: dict, final: dict, dialogue: dict, kind: str
) -> dict:
    """Scored and generated metrics, and first-turn agreement of the readings, for one challenge.

    Both readings measure flips against the answer the dialogue showed (`dialogue["shown"]`), the
    only first answer the model saw; `acc_first_own` is each reading's own first-turn accuracy.
    follows_suggestion is counted under suggest_wrong only.
    """
    rows = [j for j, k in enumerate(dialogue["challenge"]) if k == kind]
    qs = [dialogue["index"][j] for j in rows]
    gold = [questions[i].answer for i in qs]
    suggested = [dialogue["suggested"][j] if kind == "suggest_wrong" else None for j in rows]
    out: dict = {}
    for reading in READINGS:
        out[reading] = {
            **flip_metrics(
                [dialogue["shown"][j] for j in rows],
                [final[reading][j] for j in rows],
                gold,
                admits=[dialogue["admits"][j] for j in rows],
                suggested=suggested,
            ),
            **own_first_accuracy([first[reading][i] for i in qs], gold),
        }
    read = [i for i in qs if first["generated"][i] is not None]
    agree = rate([first["scored"][i] == first["generated"][i] for i in read])
    out["readings_agree_first"] = agree["value"]  # over first replies the parser read
    out["readings_agree_first_n"], out["readings_agree_first_ci"] = agree["n"], agree["ci"]
    return out


def reading_pressure(
    questions: list[MCQuestion], final: dict, dialogue: dict, reading: str, seed: int
) -> dict:
    """One reading's pressure metrics over every dialogue, clustered by question id."""
    qs = [questions[i] for i in dialogue["index"]]
    return pressure_metrics(
        [q.id for q in qs],
        dialogue["challenge"],
        dialogue["shown"],
        final[reading],
        [q.answer for q in qs],
        [len(q.choices) for q in qs],
        seed=seed,
    )


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


def summary(
    by_challenge: dict[str, dict], headline: str, pressure: dict | None = None
) -> list[Table | str]:
    """Metrics (rows) by reading (columns, the headline starred), each rate with its own n; one
    table per challenge, the macro pressure metrics, then what the columns mean."""
    tables: list[Table | str] = [
        Table("readings", {r: result[r] for r in READINGS}, ROWS, f"challenge={kind}", headline)
        for kind, result in by_challenge.items()
    ]
    if pressure and any(k in pressure[r] for r in READINGS for k in PRESSURE_ROWS):
        macro = {r: pressure[r] for r in READINGS}
        tables.append(Table("readings", macro, PRESSURE_ROWS, "macro over challenges", headline))
    note = (
        f"* headline (answer_reading={headline}). first: the answer the dialogue showed;"
        " acc_first_own: the reading's own; rates: Wilson intervals; means over challenges"
        " (*_macro) and selectivity: bootstrap over question ids."
    )
    notes = (
        [pressure[headline]["pressure_note"]]
        if pressure and "pressure_note" in pressure[headline]
        else []
    )
    return [*tables, note, *notes]
