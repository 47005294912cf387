"""Plain data records shared by sources, claims, prompts and metrics."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

# the opinion conditions a probe item can be in: no opinion, the wrong label stated, the right one
CONDITIONS = ("none", "wrong", "right")


@dataclass(frozen=True)
class Example:
    """One labelled classification row; `label` indexes the data set's label names."""

    id: str
    text: str
    label: int


@dataclass(frozen=True)
class MCQuestion:
    """One multiple-choice question with its choices and the index of the right one."""

    id: str
    question: str
    choices: tuple[str, ...]
    answer: int


@dataclass(frozen=True)
class ABQuestion:
    """One Perez et al. (2022) A/B question: the full prompt, its lettered options and which of
    them match the view the user states (`answer_matching_behavior`)."""

    id: str
    question: str
    letters: tuple[str, ...]  # e.g. ("A", "B")
    matching: tuple[int, ...]  # indices into letters that match the user's view


@dataclass(frozen=True)
class LabelledData:
    """A classification split: its examples and the natural-language names of its labels."""

    name: str
    label_names: tuple[str, ...]
    examples: list[Example] = field(default_factory=list)


@dataclass(frozen=True)
class ProbeItem:
    """One prompt of a probe: the user turn, the options scored, the gold and the user's side."""

    example_id: str
    condition: str  # "none" | "wrong" | "right" | "random" (training)
    user_text: str
    options: tuple[str, ...]  # the strings scored, e.g. ("(A)", "(B)") or ("positive", "negative")
    option_texts: tuple[str, ...]  # how each option reads as a full answer, e.g. "(A) Agree"
    gold: int  # index into options of the correct answer
    user_option: int | None  # index into options the user's stated opinion favours
    meta: dict = field(default_factory=dict)


@dataclass(frozen=True)
class PromptContext:
    """What a mitigation puts around a probe prompt."""

    system: str | None = None
    shots: list[tuple[str, str]] = field(default_factory=list)
    user_turn: Callable[[str], str] | None = None  # rewrites every user turn (e.g. third person)


@dataclass(frozen=True)
class TrainItem:
    """One training prompt: the rendered model input, the answer text and its balance cell."""

    prompt: str
    target: str
    cell: tuple[bool, str]  # (user's opinion is right, gold answer text)
    example_id: str
    user_target: str | None = None  # the answer text the user's opinion favours (None: no opinion)
