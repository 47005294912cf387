"""Multiple-choice question or labelled row → the two-turn "Are you sure?" dialogue (pure: no
torch, no HF)."""

from __future__ import annotations

from dataclasses import replace

from sycophancy.errors import UserError
from sycophancy.probes.claims import format_choices, letters
from sycophancy.prompts import Message, build_messages
from sycophancy.records import Example, LabelledData, MCQuestion, PromptContext
from sycophancy.seeds import example_rng

CHALLENGES = ("plain", "authority", "suggest_wrong", "suggest_right")
FORMATS = ("letter", "word")  # answer by the letter of a listed choice, or by the label word itself


def check_challenges(challenges: list[str], templates: dict) -> list[str]:
    """The configured challenge kinds, each known and with a template, or a UserError."""
    if not challenges:
        raise UserError(
            "probe.challenges is empty; list at least one, e.g. probe.challenges=[plain]."
        )
    known = templates.get("challenges", {})
    for kind in challenges:
        if kind not in CHALLENGES or kind not in known:
            raise UserError(
                f"Unknown challenge '{kind}' in probe.challenges; choose from "
                f"{', '.join(k for k in CHALLENGES if k in known)}."
            )
    return list(challenges)


def answer_templates(templates: dict, answer_format: str) -> dict:
    """The templates for an answer format: `word` replaces the lettered question, answer and held
    turns and the suggesting challenges with `templates.words`' (labels named, no letters)."""
    if answer_format == "letter":
        return templates
    words = dict(templates.get("words") or {})
    challenges = {**templates.get("challenges", {}), **(words.pop("challenges", None) or {})}
    return {**templates, **words, "challenges": challenges}


def classification_questions(
    data: LabelledData, dataset: dict, templates: dict
) -> list[MCQuestion]:
    """Labelled rows as questions whose choices are the label names and whose answer is the label."""
    return [classification_question(e, data, dataset, templates) for e in data.examples]


def classification_question(
    example: Example, data: LabelledData, dataset: dict, templates: dict
) -> MCQuestion:
    """One labelled row as a question: `templates.classification` with the task question and text."""
    text = templates["classification"].format(
        task_question=dataset.get("task_question") or "", text=example.text
    )
    return MCQuestion(example.id, text.strip(), tuple(data.label_names), example.label)


def shuffled(question: MCQuestion, data_seed: int) -> MCQuestion:
    """The question with its choices in a seeded order (data_seed, id), so no letter is favoured."""
    order = list(range(len(question.choices)))
    example_rng(data_seed, question.id, "choices").shuffle(order)
    choices = tuple(question.choices[i] for i in order)
    return replace(question, choices=choices, answer=order.index(question.answer))


def letter_options(k: int, prefix: str = "") -> list[str]:
    """The strings scored for k lettered choices, e.g. ["The answer is (A)", ...]."""
    return [f"{prefix}({letter})" for letter in letters(k)]


def answer_options(question: MCQuestion, answer_format: str, prefix: str = "") -> list[str]:
    """The strings scored: "{prefix}(A)", ... for letters, "{prefix}positive", ... for words."""
    if answer_format == "word":
        return [f"{prefix}{choice}" for choice in question.choices]
    return letter_options(len(question.choices), prefix)


def choice_texts(question: MCQuestion, templates: dict) -> tuple[str, tuple[str, ...]]:
    """The lettered choice block and each choice as a full answer text, e.g. "(B) 12"."""
    block, _, texts = format_choices(list(question.choices), templates["choice"])
    return block, texts


def suggested_for(kind: str, question: MCQuestion, data_seed: int) -> int | None:
    """The choice a challenge suggests: a seeded wrong one (suggest_wrong), the right one
    (suggest_right), none for the others."""
    if kind == "suggest_wrong":
        return suggested_wrong(question, data_seed)
    return question.answer if kind == "suggest_right" else None


def question_turn(question: MCQuestion, templates: dict) -> str:
    """The first user turn: the question and its lettered choices."""
    block, _ = choice_texts(question, templates)
    return templates["question"].format(
        question=question.question, choices=block, labels=", ".join(question.choices)
    )


def answer_turn(question: MCQuestion, index: int, templates: dict, key: str = "answer") -> str:
    """An assistant turn stating choice `index`, e.g. "The answer is (B) 12."."""
    return templates[key].format(
        letter=letters(len(question.choices))[index], choice=question.choices[index]
    )


def suggested_wrong(question: MCQuestion, data_seed: int) -> int:
    """A wrong choice to suggest, drawn from data_seed and the question id (not the model)."""
    rng = example_rng(data_seed, question.id, "suggest_wrong")
    return rng.choice([i for i in range(len(question.choices)) if i != question.answer])


def challenge_turn(
    kind: str, question: MCQuestion, templates: dict, topic: str, suggested: int | None = None
) -> str:
    """The user's pushback of the given kind."""
    template = templates["challenges"][kind]
    fields = {"topic": topic}
    if suggested is not None:
        fields.update(
            letter=letters(len(question.choices))[suggested], choice=question.choices[suggested]
        )
    return template.format(**fields)


def first_messages(user_text: str, context: PromptContext) -> list[Message]:
    """Turn 1: the mitigation's context, then the question."""
    return build_messages(
        user_text, system=context.system, shots=context.shots, user_turn=context.user_turn
    )


def second_messages(
    user_text: str, answer: str, challenge: str, context: PromptContext
) -> list[Message]:
    """Turn 2: the same context and question, the model's answer as an assistant turn, the challenge."""
    history = [{"role": "user", "content": user_text}, {"role": "assistant", "content": answer}]
    return build_messages(
        challenge,
        system=context.system,
        shots=context.shots,
        history=history,
        user_turn=context.user_turn,
    )


def held_shot(
    question: MCQuestion, templates: dict, topic: str, kind: str, data_seed: int
) -> tuple[tuple[str, str], ...]:
    """An in-context dialogue that keeps the right answer under a challenge: two (user, assistant) pairs."""
    suggested = suggested_for(kind, question, data_seed)
    return (
        (question_turn(question, templates), answer_turn(question, question.answer, templates)),
        (
            challenge_turn(kind, question, templates, topic, suggested),
            answer_turn(question, question.answer, templates, key="held"),
        ),
    )
