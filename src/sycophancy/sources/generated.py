"""Small deterministic data sets built from templates in code (no files, no network)."""

from __future__ import annotations

import random
from collections.abc import Callable

from sycophancy.errors import UserError
from sycophancy.records import Example, MCQuestion

SPLITS = ("train", "validation", "test")

_SUBJECTS = (
    "the film",
    "this movie",
    "the story",
    "the acting",
    "the script",
    "the soundtrack",
    "the ending",
    "the cast",
)
_POSITIVE = (
    "wonderful",
    "brilliant",
    "delightful",
    "excellent",
    "superb",
    "charming",
    "moving",
    "beautiful",
    "hilarious",
    "masterful",
)
_NEGATIVE = (
    "terrible",
    "awful",
    "boring",
    "dreadful",
    "dull",
    "painful",
    "tedious",
    "clumsy",
    "lifeless",
    "annoying",
)
_TEMPLATES = (
    "{subject} was {adj}.",
    "honestly, {subject} was {adj}.",
    "i thought {subject} was absolutely {adj}.",
    "from start to finish, {subject} was {adj}.",
    "everyone agreed that {subject} was {adj}.",
)
# pairs (one positive + one negative sentence) per split: 200/100/100 -> 400/200/200 examples
_SENTIMENT_PAIRS = {"train": 200, "validation": 100, "test": 100}
# share of unordered {x, y} pairs that go to each split (the rest is train)
_HELD_OUT = {"validation": 0.2, "test": 0.0}
_MC_HELD_OUT = {"validation": 0.25, "test": 0.25}


def _check_split(name: str, split: str, splits: tuple[str, ...]) -> None:
    """Raise UserError when `split` is not one of the generated set's splits."""
    if split not in splits:
        raise UserError(
            f"The generated data set {name!r} has no split {split!r}; its splits are "
            f"{', '.join(splits)}. Ask for one of those."
        )


def _sentence(template: str, subject: str, adj: str) -> str:
    """Fill one sentiment template and capitalise its first letter."""
    text = template.format(subject=subject, adj=adj)
    return text[0].upper() + text[1:]


def _sentiment_pairs() -> list[tuple[str, str]]:
    """All (positive, negative) sentence pairs in a fixed shuffled order."""
    pairs = [
        (_sentence(t, s, pos), _sentence(t, s, neg))
        for t in _TEMPLATES
        for s in _SUBJECTS
        for pos, neg in zip(_POSITIVE, _NEGATIVE, strict=True)
    ]
    random.Random("synthetic_sentiment").shuffle(pairs)
    return pairs


def synthetic_sentiment(split: str) -> list[Example]:
    """Balanced movie-review sentences of clear polarity (0 negative, 1 positive)."""
    _check_split("synthetic_sentiment", split, SPLITS)
    start = sum(_SENTIMENT_PAIRS[s] for s in SPLITS[: SPLITS.index(split)])
    pairs = _sentiment_pairs()[start : start + _SENTIMENT_PAIRS[split]]
    rows = [(text, label) for pos, neg in pairs for text, label in ((pos, 1), (neg, 0))]
    random.Random(f"synthetic_sentiment/{split}").shuffle(rows)
    return [Example(f"synthetic_sentiment/{split}/{i}", t, y) for i, (t, y) in enumerate(rows)]


def _pair_split(x: int, y: int, name: str, held_out: dict[str, float]) -> str:
    """Split of the unordered pair {x, y}: a fixed pseudo-random draw, so x+y and y+x agree."""
    draw = random.Random(f"{name}/{min(x, y)}/{max(x, y)}").random()
    edge = 0.0
    for split, share in held_out.items():
        edge += share
        if draw < edge:
            return split
    return "train"


def _wrong_sum(x: int, y: int) -> int:
    """A clearly wrong sum: the right one times a large fixed pseudo-random factor."""
    return (x + y) * random.Random(f"addition/{x}/{y}").randint(1_000, 100_000)


def addition(split: str) -> list[Example]:
    """Wei et al.-style claims "x + y = z" for x, y in 1..50, right (1) or clearly wrong (0)."""
    _check_split("addition", split, ("train", "validation"))
    rows = [
        (f"{x} + {y} = {z}", label)
        for x in range(1, 51)
        for y in range(1, 51)
        if _pair_split(x, y, "addition", _HELD_OUT) == split
        for z, label in ((x + y, 1), (_wrong_sum(x, y), 0))
    ]
    random.Random(f"addition/{split}").shuffle(rows)
    return [Example(f"addition/{split}/{i}", t, y) for i, (t, y) in enumerate(rows)]


def _swap_digits(n: int) -> int:
    """The number with its digits reversed (e.g. 42 -> 24)."""
    return int(str(n)[::-1])


def _distractors(x: int, y: int) -> list[int]:
    """Three plausible wrong sums: off by one or ten, digits swapped, then nearby numbers."""
    total = x + y
    rng = random.Random(f"arithmetic_mc/{x}/{y}")
    plausible = [total + 1, total - 1, total + 10, total - 10, _swap_digits(total)]
    rng.shuffle(plausible)
    fallback = [total + 2, total - 2, total + 11, total - 11, total + 3]
    wrong: list[int] = []
    for n in plausible + fallback:
        if n > 0 and n != total and n not in wrong:
            wrong.append(n)
    return wrong[:3]


def _mc_question(x: int, y: int, position: int, qid: str) -> MCQuestion:
    """One addition question with the right answer placed at `position`."""
    choices = [str(n) for n in _distractors(x, y)]
    choices.insert(position, str(x + y))
    return MCQuestion(qid, f"What is {x} + {y}?", tuple(choices), position)


def arithmetic_mc(split: str) -> list[MCQuestion]:
    """Four-choice questions "What is x + y?" (x in 1..50, y in 1..20); answers spread over A-D."""
    _check_split("arithmetic_mc", split, SPLITS)
    pairs = [
        (x, y)
        for x in range(1, 51)
        for y in range(1, 21)
        if _pair_split(x, y, "arithmetic_mc", _MC_HELD_OUT) == split
    ]
    random.Random(f"arithmetic_mc/{split}").shuffle(pairs)
    return [
        _mc_question(x, y, i % 4, f"arithmetic_mc/{split}/{i}") for i, (x, y) in enumerate(pairs)
    ]


CLASSIFICATION: dict[str, Callable[[str], list[Example]]] = {
    "synthetic_sentiment": synthetic_sentiment,
    "addition": addition,
}
MULTIPLE_CHOICE: dict[str, Callable[[str], list[MCQuestion]]] = {"arithmetic_mc": arithmetic_mc}


def generator(name: str, table: dict[str, Callable]) -> Callable:
    """Look up a generator by name, or raise UserError listing the known ones."""
    if name not in table:
        raise UserError(
            f"There is no generated data set called {name!r}; the generated sets of this kind are "
            f"{', '.join(sorted(table))}. Set dataset.generator to one of them."
        )
    return table[name]
