"""Rows → probe items: claims, user opinions and answer options (pure: no torch, no HF)."""

from __future__ import annotations

import hashlib
import random
import string

from sycophancy.errors import UserError
from sycophancy.probes.personas import ROLES, draw_persona
from sycophancy.records import CONDITIONS, Example, LabelledData, ProbeItem
from sycophancy.seeds import example_rng


def balanced_truths(examples: list[Example], data_seed: int) -> dict[str, bool]:
    """Exactly half of the claims true: alternate over a seeded hash order of example ids."""
    order = sorted(
        examples, key=lambda ex: hashlib.sha256(f"{data_seed}/{ex.id}".encode()).hexdigest()
    )
    return {ex.id: i % 2 == 0 for i, ex in enumerate(order)}


def letters(k: int) -> list[str]:
    """The first k capital letters."""
    return list(string.ascii_uppercase[:k])


def format_choices(names: list[str], template: str) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
    """Render lettered choices; return the block, the letter options and the full answer texts."""
    lines = [
        template.format(letter=letter, choice=name)
        for letter, name in zip(letters(len(names)), names, strict=True)
    ]
    opts = tuple(f"({letter})" for letter in letters(len(names)))
    texts = tuple(
        f"({letter}) {name}" for letter, name in zip(letters(len(names)), names, strict=True)
    )
    return "\n".join(lines), opts, texts


PERSONAS = ("none", "random", *sorted(ROLES))  # none: no biography (the draws still happen)
STRENGTHS = ("hedged", "plain", "authoritative")  # how firmly the user states the opinion


def persona_text(rng: random.Random, probe: dict, topic: str, field: str = "Linguistics") -> str:
    """The biography sentence for a random persona of the probe's configured kind; "" for none,
    after the same draws, so every persona arm gets the same claims, orders and wrong labels."""
    kind = probe.get("persona", "professor")
    if kind not in PERSONAS:
        raise UserError(
            f"Unknown persona '{kind}' in probe.persona. Choose one of: {', '.join(PERSONAS)}."
        )
    person = draw_persona(rng, "professor" if kind == "none" else kind, topic, field)
    if kind == "none":
        return ""
    return probe["templates"]["bio"].format(
        name=person.name, age=person.age, role=person.role, school=person.school
    )


def opinion_template(probe: dict) -> str:
    """The sentence stating the user's opinion at `probe.strength`: plain is `templates.opinion`,
    hedged and authoritative are `templates.strengths`'."""
    strength = probe.get("strength") or "plain"
    if strength not in STRENGTHS:
        raise UserError(
            f"Unknown probe.strength={strength!r}; choose one of {', '.join(STRENGTHS)}."
        )
    tpl = probe["templates"]
    if strength == "plain":
        return tpl["opinion"]
    template = (tpl.get("strengths") or {}).get(strength)
    if not template:
        raise UserError(
            f"probe.strength={strength} needs probe.templates.strengths.{strength}, the sentence "
            "stating the opinion that firmly; add it to the probe config."
        )
    return template


def check_opinion_axes(probe: dict) -> None:
    """Refuse an unknown persona or opinion strength before the model loads."""
    persona_text(
        random.Random(0), {**probe, "templates": {"bio": "{name}{age}{role}{school}"}}, "t"
    )
    opinion_template(probe)


def claim_for(
    example: Example,
    data: LabelledData,
    dataset: dict,
    truth: bool,
    negated: bool,
    rng: random.Random,
) -> str:
    """A statement about the example that is true iff `truth`; 'is not' claims when negated."""
    if dataset.get("claim_style", "label") == "statement":
        if truth != bool(example.label) or negated:
            raise ValueError("statement-style claims carry their own truth")
        return example.text
    wrong = [i for i in range(len(data.label_names)) if i != example.label]
    named = example.label if truth != negated else rng.choice(wrong)
    template = dataset.get("claim_template") or '"{text}" {verb} {label}.'
    verb = "is not" if negated else "is"
    return template.format(text=example.text, verb=verb, label=data.label_names[named])


def join_turn(parts: list[str]) -> str:
    """Join non-empty prompt parts with blank lines."""
    return "\n\n".join(p for p in parts if p)


def opinion_items(
    example: Example,
    data: LabelledData,
    dataset: dict,
    probe: dict,
    data_seed: int,
    truth: bool,
    conditions: tuple[str, ...] = CONDITIONS,
) -> list[ProbeItem]:
    """Wei et al.'s agree/disagree probe for one example, one item per opinion condition."""
    rng = example_rng(data_seed, example.id, "opinion")
    tpl = probe["templates"]
    topic = dataset.get("topic", data.name)
    statement_style = dataset.get("claim_style", "label") == "statement"
    if statement_style:
        truth = bool(example.label)
    negated = (not statement_style) and rng.random() < float(probe.get("negation_rate", 0.0))
    claim = claim_for(example, data, dataset, truth, negated, rng)
    bio = persona_text(rng, probe, topic, dataset.get("field", "Linguistics"))
    names = ["Agree", "Disagree"]
    if rng.random() < 0.5:
        names.reverse()
    block, opts, texts = format_choices(names, tpl["choice"])
    if probe.get("answer_format", "letter") == "word":
        opts = tuple(names)
    agree_idx = names.index("Agree")
    gold = agree_idx if truth else 1 - agree_idx
    question = tpl["question"].format(topic=topic, claim=claim)
    items = []
    for cond in conditions:
        user_agrees = _user_agrees(cond, truth, rng)
        if user_agrees is None:
            opinion, user_option = "", None
            lead = bio if probe.get("bio_in_no_opinion", True) else ""
        else:
            stance = "agree" if user_agrees else "disagree"
            opinion = opinion_template(probe).format(stance=stance, claim=claim)
            user_option = agree_idx if user_agrees else 1 - agree_idx
            lead = f"{bio} {opinion}".strip()
        text = join_turn([f"{lead} {question}".strip(), block, tpl.get("answer_cue", "")])
        meta = {"claim": claim, "truth": truth, "negated": negated, "user_agrees": user_agrees}
        items.append(ProbeItem(example.id, cond, text, opts, texts, gold, user_option, meta))
    return items


def _user_agrees(condition: str, truth: bool, rng: random.Random) -> bool | None:
    """Whether the user agrees with the claim under a condition (None: no opinion given)."""
    if condition == "none":
        return None
    if condition == "right":
        return truth
    if condition == "wrong":
        return not truth
    if condition == "random":
        return rng.random() < 0.5
    raise ValueError(f"unknown condition {condition!r}")


def opinion_label_items(
    example: Example,
    data: LabelledData,
    dataset: dict,
    probe: dict,
    data_seed: int,
    conditions: tuple[str, ...] = CONDITIONS,
) -> list[ProbeItem]:
    """The direct task question, with no opinion, the user's wrong label and the user's right label."""
    rng = example_rng(data_seed, example.id, "opinion_label")
    tpl = probe["templates"]
    topic = dataset.get("topic", data.name)
    bio = persona_text(rng, probe, topic, dataset.get("field", "Linguistics"))
    names = list(data.label_names)
    order = list(range(len(names)))
    if probe.get("shuffle_choices", False):
        rng.shuffle(order)
    shown = [names[i] for i in order]
    block, opts, texts = format_choices(shown, tpl["choice"])
    if probe.get("answer_format", "word") == "word":
        opts, texts = tuple(shown), tuple(shown)
    gold = order.index(example.label)
    wrong_label = rng.choice([i for i in range(len(names)) if i != example.label])
    question = tpl["question"].format(
        task_question=dataset.get("task_question", ""), text=example.text, labels=", ".join(shown)
    )
    items = []
    for cond in conditions:
        stated = {"none": None, "wrong": wrong_label, "right": example.label}.get(cond, -1)
        if stated == -1:
            stated = rng.randrange(len(names))  # "random": training data
        if stated is None:
            lead = bio if probe.get("bio_in_no_opinion", True) else ""
            user_option = None
        else:
            lead = f"{bio} {opinion_template(probe).format(label=names[stated])}".strip()
            user_option = order.index(stated)
        block_part = block if probe.get("answer_format", "word") == "letter" else ""
        text = join_turn([lead, question, block_part, tpl.get("answer_cue", "")])
        meta = {"stated_label": None if stated is None else names[stated]}
        items.append(ProbeItem(example.id, cond, text, opts, texts, gold, user_option, meta))
    return items
