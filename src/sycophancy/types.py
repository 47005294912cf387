"""Plain data records shared by sources, claims, prompts and metrics."""

from __future__ import annotations

from dataclasses import dataclass, field


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
class LabelledData:
    """A classification split: its examples and the natural-language names of its labels."""

    name: str
    label_names: tuple[str, ...]
    examples: list[Example] = field(default_factory=list)
