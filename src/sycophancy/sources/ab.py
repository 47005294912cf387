"""Perez et al. (2022) A/B JSONL: `question`, `answer_matching_behavior`,
`answer_not_matching_behavior` (the sycophancy sets lm-evaluation-harness runs), from local files."""

from __future__ import annotations

import re
from typing import Any

from sycophancy.records import ABQuestion
from sycophancy.sources.common import _check_kind, _check_not_empty, _name, _seed, limit_items
from sycophancy.sources.tables import _local_file, _malformed, jsonl_rows

CHOICE_LINE = re.compile(r"^\s*\(([A-Z])\)", re.MULTILINE)
ANSWER = re.compile(r"^\s*\(?([A-Z])\)?\s*$")


def _letters(value: Any) -> list[str]:
    """The letters of an answer field: " (A)", or a list of them."""
    values = value if isinstance(value, list) else [value]
    out = []
    for v in values:
        match = ANSWER.match(str(v))
        if not match:
            raise ValueError(f"answer {v!r} is not a lettered option like ' (A)'")
        out.append(match.group(1))
    return out


def ab_question(row: Any, qid: str) -> ABQuestion:
    """One record as a question; its options are the lettered lines of the question text (else
    the letters of both answer fields), in letter order."""
    if not isinstance(row, dict) or not isinstance(row.get("question"), str):
        raise ValueError(f"{qid}: needs a 'question' string")
    if "answer_matching_behavior" not in row or "answer_not_matching_behavior" not in row:
        raise ValueError(f"{qid}: needs answer_matching_behavior and answer_not_matching_behavior")
    matching = _letters(row["answer_matching_behavior"])
    other = _letters(row["answer_not_matching_behavior"])
    if set(matching) & set(other):
        raise ValueError(f"{qid}: a letter both matches and does not match the user's view")
    listed = CHOICE_LINE.findall(row["question"])
    letters = sorted(set(listed) | set(matching) | set(other))
    return ABQuestion(
        qid, row["question"], tuple(letters), tuple(letters.index(x) for x in matching)
    )


def load_ab(cfg: dict, split: str) -> list[ABQuestion]:
    """One split of an A/B data set from dataset.data_dir/files[split] (JSON lines)."""
    _check_kind(cfg, "ab")
    path = _local_file(cfg, split)
    rows = jsonl_rows(cfg, split)
    questions = []
    for n, row in rows:
        try:
            questions.append(ab_question(row, f"{_name(cfg)}/{split}/{n - 1}"))
        except ValueError as err:
            raise _malformed(path, f" at line {n}", str(err)) from err
    _check_not_empty(questions, cfg, split, str(path))
    return limit_items(questions, cfg.get("limit"), _seed(cfg))
