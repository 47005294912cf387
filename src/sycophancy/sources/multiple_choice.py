"""Multiple-choice formats: MMLU (one CSV per subject, or cais/mmlu), BIG-bench task.json and
Sharma et al.'s sycophancy-eval JSONL (`base`: question, answers, correct letter)."""

from __future__ import annotations

import csv
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

from sycophancy.errors import UserError
from sycophancy.records import MCQuestion
from sycophancy.sources.common import _name, _split_entry
from sycophancy.sources.hub import hub_load
from sycophancy.sources.labels import _norm
from sycophancy.sources.tables import _data_dir, _local_file, _malformed, jsonl_rows

_LETTERS = ("A", "B", "C", "D")


def _mc_reader(cfg: dict, source: str):
    """The reader for this config's multiple-choice format and source."""
    readers = {
        ("mmlu", "local"): _mmlu_local,
        ("mmlu", "hub"): _mmlu_hub,
        ("bigbench", "local"): _bigbench_local,
        ("bigbench", "hub"): _bigbench_hub,
        ("sycophancy_eval", "local"): _sycophancy_eval_local,
    }
    fmt = cfg.get("format")
    if (fmt, source) not in readers:
        raise UserError(
            f"dataset {_name(cfg)}: multiple-choice format {fmt!r} is unknown; use "
            "dataset.format=mmlu, bigbench or sycophancy_eval (local files only), or "
            "source=generated with a generator."
        )
    return readers[(fmt, source)]


def _subjects(cfg: dict) -> list[str] | None:
    """The configured MMLU subjects (None = all)."""
    subjects = cfg.get("subjects")
    if subjects in (None, "", []):
        return None
    return [subjects] if isinstance(subjects, str) else [str(s) for s in subjects]


def _discover_subjects(data_dir: Path, pattern: str) -> list[str]:
    """Subjects whose files match a `{subject}` file pattern under data_dir."""
    regex = re.compile(re.escape(pattern).replace(re.escape("{subject}"), "(.+)"))
    found = (regex.fullmatch(p.relative_to(data_dir).as_posix()) for p in data_dir.rglob("*"))
    return sorted(m.group(1) for m in found if m)


def _mmlu_local(cfg: dict, split: str) -> tuple[list[MCQuestion], str]:
    """MMLU questions from <data_dir>/<files[split]> with one CSV per subject."""
    data_dir, pattern = _data_dir(cfg), _split_entry(cfg, "files", split)
    available = _discover_subjects(data_dir, pattern)
    subjects = _subjects(cfg) or available
    unknown = [s for s in subjects if s not in available]
    if not available or unknown:
        raise UserError(
            f"dataset {_name(cfg)}, split {split!r}: no file {pattern} under {data_dir} for "
            f"subjects {unknown or 'any'}; available subjects: {available or 'none'}. Fix "
            "dataset.data_dir (the folder holding dev/, val/, test/) or dataset.subjects."
        )
    questions = []
    for subject in subjects:
        path = data_dir / pattern.format(subject=subject)
        questions += _read_mmlu_csv(path, f"{_name(cfg)}/{split}/{subject}")
    return questions, f"{data_dir}/{pattern}"


def _read_mmlu_csv(path: Path, prefix: str) -> list[MCQuestion]:
    """Questions from one header-less MMLU CSV: question, A, B, C, D, answer letter."""
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
    except (UnicodeDecodeError, csv.Error) as err:
        raise _malformed(path, "", str(err)) from err
    questions = []
    for line, row in enumerate(rows, start=1):
        if len(row) != 6 or row[5].strip().upper() not in _LETTERS:
            raise _malformed(
                path, f" at line {line}", "MMLU rows need question,A,B,C,D,answer-letter (A-D)"
            )
        answer = _LETTERS.index(row[5].strip().upper())
        choices = tuple(c.strip() for c in row[1:5])
        questions.append(MCQuestion(f"{prefix}/{line - 1}", row[0].strip(), choices, answer))
    return questions


def _mmlu_answer(value: Any, n_choices: int) -> int | None:
    """An MMLU answer as an index, from an index or a letter; None when out of range."""
    key = _norm(value).upper()
    index = _LETTERS.index(key) if key in _LETTERS else None
    if re.fullmatch(r"\d+", key):
        index = int(key)
    return index if index is not None and index < n_choices else None


def _mmlu_hub(cfg: dict, split: str) -> tuple[list[MCQuestion], str]:
    """MMLU questions from the hub (cais/mmlu: question, subject, choices, answer index)."""
    hub_split = _split_entry(cfg, "splits", split)
    questions: list[MCQuestion] = []
    for config in _subjects(cfg) or [cfg.get("hub_config") or "all"]:
        rows = hub_load(cfg, config, hub_split).to_list()
        seen: Counter = Counter()
        for row in rows:
            subject = row.get("subject") or config
            answer = _mmlu_answer(row["answer"], len(row["choices"]))
            if answer is None:
                raise UserError(
                    f"dataset {_name(cfg)}: hub row {row!r} has an answer outside its choices. "
                    "Check dataset.hub_id (expected cais/mmlu)."
                )
            qid = f"{_name(cfg)}/{split}/{subject}/{seen[subject]}"
            seen[subject] += 1
            choices = tuple(str(c).strip() for c in row["choices"])
            questions.append(MCQuestion(qid, str(row["question"]).strip(), choices, answer))
    return questions, f"the hub split {cfg['hub_id']}:{hub_split}"


def _task(cfg: dict) -> str:
    """The configured BIG-bench task name."""
    task = cfg.get("task")
    if not task:
        raise UserError(
            f"dataset {_name(cfg)}: set dataset.task to a BIG-bench task, e.g. "
            "dataset.task=general_knowledge."
        )
    return str(task)


def _bigbench_question(item: Any, qid: str) -> MCQuestion | None:
    """One BIG-bench example as a question; None when it is not multiple choice."""
    if not isinstance(item, dict) or "target_scores" not in item:
        return None
    scores, text = item["target_scores"], item.get("input")
    if not isinstance(scores, dict) or not scores or not isinstance(text, str):
        raise ValueError(f"{qid}: needs an 'input' string and a non-empty 'target_scores' map")
    values = list(scores.values())
    if not all(isinstance(v, int | float) for v in values) or max(values) <= 0:
        raise ValueError(f"{qid}: target_scores {scores!r} must be numbers with one above 0")
    choices = tuple(str(c).strip() for c in scores)
    return MCQuestion(qid, text.strip(), choices, values.index(max(values)))


def _bigbench_questions(items: list, prefix: str) -> list[MCQuestion]:
    """The multiple-choice questions among BIG-bench examples, ids prefix/<index>."""
    questions = (_bigbench_question(item, f"{prefix}/{i}") for i, item in enumerate(items))
    return [q for q in questions if q is not None]


def _bigbench_local(cfg: dict, split: str) -> tuple[list[MCQuestion], str]:
    """BIG-bench questions from <data_dir>/<task>/task.json (examples[*].input/target_scores)."""
    task = _task(cfg)
    path = _local_file(cfg, split, task=task)
    try:
        examples = json.loads(path.read_text(encoding="utf-8"))["examples"]
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as err:
        raise _malformed(path, "", f"expected JSON with an 'examples' list ({err!r})") from err
    if not isinstance(examples, list):
        raise _malformed(path, "", "'examples' is not a list")
    try:
        return _bigbench_questions(examples, f"{_name(cfg)}/{split}/{task}"), str(path)
    except ValueError as err:
        raise _malformed(path, "", str(err)) from err


def _bigbench_hub(cfg: dict, split: str) -> tuple[list[MCQuestion], str]:
    """BIG-bench questions from the hub (tasksource/bigbench: one config per task)."""
    task, hub_split = _task(cfg), _split_entry(cfg, "splits", split)
    rows = hub_load(cfg, cfg.get("hub_config") or task, hub_split).to_list()
    origin = f"the hub split {cfg['hub_id']}:{hub_split}"
    try:
        items = [_bigbench_hub_item(row) for row in rows]
        return _bigbench_questions(items, f"{_name(cfg)}/{split}/{task}"), origin
    except ValueError as err:
        raise UserError(f"dataset {_name(cfg)}: {origin} has a bad row: {err}.") from err


def _bigbench_hub_item(row: dict) -> dict:
    """A tasksource/bigbench row in task.json shape (input, target_scores)."""
    targets, scores = row.get("multiple_choice_targets") or [], row.get("multiple_choice_scores")
    if not targets:
        return {"input": row.get("inputs")}
    return {
        "input": row.get("inputs"),
        "target_scores": dict(zip(targets, scores or [], strict=True)),
    }


ANSWER_LINE = re.compile(r"^\s*\(([A-Z])\)\s*(.*?)\s*$", re.MULTILINE)


def _sycophancy_eval_question(row: Any, qid: str) -> MCQuestion | None:
    """One sycophancy-eval record as a question: `base.question`, the choices of
    `base.answers` ("(A) ...\n(B) ...", or a list in `base.answers_list`) and `base.correct_letter`;
    None for a record without lettered answers (the free-form subsets)."""
    base = row.get("base") if isinstance(row, dict) else None
    if not isinstance(base, dict) or not base.get("correct_letter"):
        return None
    question = base.get("question")
    listed = base.get("answers_list")
    if isinstance(listed, list) and listed:
        choices = tuple(str(c).strip() for c in listed)
    else:
        choices = tuple(m.group(2) for m in ANSWER_LINE.finditer(str(base.get("answers") or "")))
    letter = str(base["correct_letter"]).strip().strip("()")
    index = ord(letter) - ord("A") if len(letter) == 1 else -1
    if not isinstance(question, str) or len(choices) < 2 or not 0 <= index < len(choices):
        raise ValueError(
            f"{qid}: needs base.question, two or more lettered base.answers and a "
            f"base.correct_letter among them (got {letter!r} for {len(choices)} answers)"
        )
    return MCQuestion(qid, question.strip(), choices, index)


def _sycophancy_eval_local(cfg: dict, split: str) -> tuple[list[MCQuestion], str]:
    """Questions from Sharma et al.'s sycophancy-eval JSONL (e.g. are_you_sure.jsonl) under
    data_dir; records without lettered answers are skipped."""
    path = _local_file(cfg, split)
    rows = jsonl_rows(cfg, split)
    out = []
    for n, row in rows:
        try:
            q = _sycophancy_eval_question(row, f"{_name(cfg)}/{split}/{n - 1}")
        except ValueError as err:
            raise _malformed(path, f" at line {n}", str(err)) from err
        if q is not None:
            out.append(q)
    return out, str(path)
