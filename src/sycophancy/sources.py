"""Load classification and multiple-choice splits from the hub, local files or generators."""

from __future__ import annotations

import csv
import hashlib
import heapq
import json
import re
import string
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sycophancy import generated, hub
from sycophancy.errors import UserError
from sycophancy.types import Example, LabelledData, MCQuestion

Table = dict[str, list]  # column name -> values, all columns the same length

FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet"}
_LETTERS = ("A", "B", "C", "D")
_HUB_HINT = (
    "use dataset.data_dir=... (e.g. ../shared/data/sst2) or an embedded set such as "
    "dataset=synthetic_sentiment"
)


# ---------------------------------------------------------------- public API


def load_classification(cfg: dict, split: str) -> LabelledData:
    """Load one split of the classification data set described by a `dataset` config."""
    _check_kind(cfg, "classification")
    names = label_names(cfg)
    source = resolve_source(cfg)
    if source == "generated":
        examples = _generated(cfg, split, generated.CLASSIFICATION)
        _check_generated_labels(examples, names, cfg)
        origin = "the generator"
    else:
        table, origin = _local_table(cfg, split) if source == "local" else _hub_table(cfg, split)
        examples = table_to_examples(table, cfg, split, origin)
    _check_not_empty(examples, cfg, split, origin)
    return LabelledData(_name(cfg), names, limit_items(examples, cfg.get("limit"), _seed(cfg)))


def load_multiple_choice(cfg: dict, split: str) -> list[MCQuestion]:
    """Load one split of the multiple-choice data set described by a `dataset` config."""
    _check_kind(cfg, "multiple_choice")
    source = resolve_source(cfg)
    if source == "generated":
        questions, origin = _generated(cfg, split, generated.MULTIPLE_CHOICE), "the generator"
    else:
        questions, origin = _mc_reader(cfg, source)(cfg, split)
    _check_not_empty(questions, cfg, split, origin)
    return limit_items(questions, cfg.get("limit"), _seed(cfg))


def resolve_source(cfg: dict) -> str:
    """Where the data comes from: "generated", "local" (data_dir set) or "hub"."""
    if cfg.get("source") == "generated":
        return "generated"
    if cfg.get("data_dir") not in (None, ""):
        return "local"
    if cfg.get("source") == "local":
        raise _no_data_dir(cfg)
    return "hub"


def limit_items(items: list, limit: Any, seed: int) -> list:
    """A fixed seeded subset of `limit` items (kept in order); nested as `limit` grows."""
    if limit is None:
        return items
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise UserError(
            f"dataset.limit must be a positive whole number or null, not {limit!r}. "
            "Set e.g. dataset.limit=200, or dataset.limit=null for the whole split."
        )
    if limit >= len(items):
        return items
    keep = set(heapq.nsmallest(limit, range(len(items)), key=lambda i: _rank(seed, items[i].id)))
    return [item for i, item in enumerate(items) if i in keep]


def label_names(cfg: dict) -> tuple[str, ...]:
    """The configured natural-language label names, checked to be non-empty strings."""
    names = cfg.get("label_names")
    if not isinstance(names, list | tuple) or len(names) < 2:
        raise UserError(
            f"dataset {_name(cfg)}: label_names must list at least two label names, got "
            f'{names!r}. Set dataset.label_names, e.g. \'["negative", "positive"]\'.'
        )
    bad = [n for n in names if not isinstance(n, str) or not n.strip()]
    if bad:
        raise UserError(
            f"dataset {_name(cfg)}: label_names must be non-empty strings, but {bad!r} are not "
            f"(label_names: {names!r}). Quote them in YAML: bare yes/no/true/false are booleans."
        )
    return tuple(names)


def read_table(path: Path, fmt: str | None = None) -> Table:
    """Read a csv/tsv (with header; tsv unquoted), jsonl or parquet file into columns."""
    fmt = fmt or FORMATS.get(path.suffix.lower())
    readers = {"csv": _read_delimited, "tsv": _read_delimited, "jsonl": _read_jsonl}
    if fmt == "parquet":
        return _read_parquet(path)
    if fmt not in readers:
        raise UserError(
            f"Cannot tell how to read {path}: format {fmt!r} is not one of csv, tsv, jsonl, "
            "parquet. Set dataset.format=csv|tsv|jsonl|parquet or rename the file."
        )
    return readers[fmt](path, fmt)


def table_to_examples(table: Table, cfg: dict, split: str, origin: str) -> list[Example]:
    """Turn a table into examples: render text, drop `drop_labels` rows, map labels to ids."""
    columns = _required_columns(cfg)
    _check_columns(table, columns, cfg, origin)
    names, mapping = label_names(cfg), _label_map(cfg)
    drop = {_norm(v) for v in cfg.get("drop_labels") or []}
    raw_labels = table[cfg["label_field"]]
    examples, bad = [], Counter()
    for i, raw in enumerate(raw_labels):
        key = _norm(raw)
        if key in drop:
            continue
        label = _encode_label(key, names, mapping)
        if label is None:
            bad[key] += 1
            continue
        text = _render(cfg, {c: table[c][i] for c in columns})
        examples.append(Example(f"{_name(cfg)}/{split}/{i}", text, label))
    if bad:
        raise _bad_labels(bad, names, cfg, origin)
    return examples


# ---------------------------------------------------------------- config helpers


def _name(cfg: dict) -> str:
    """The data set's name for ids and messages."""
    return str(cfg.get("name") or "dataset")


def _seed(cfg: dict) -> int:
    """The seed that picks `limit` subsets."""
    seed = cfg.get("data_seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise UserError(f"data_seed must be a whole number, not {seed!r}. Set e.g. data_seed=0.")
    return seed


def _rank(seed: int, item_id: str) -> bytes:
    """A stable pseudo-random sort key for one item under one seed."""
    return hashlib.blake2b(f"{seed}:{item_id}".encode(), digest_size=8).digest()


def _check_kind(cfg: dict, kind: str) -> None:
    """Raise UserError when the config describes the other kind of data set."""
    if cfg.get("kind", kind) != kind:
        raise UserError(
            f"dataset {_name(cfg)} is a {cfg.get('kind')} data set, but this step needs a "
            f"{kind} one. Pick a {kind} dataset (see conf/dataset/) for this experiment."
        )


def _split_entry(cfg: dict, key: str, split: str) -> str:
    """The hub split or file configured for `split`, or UserError naming the known splits."""
    table = cfg.get(key) or {}
    if split not in table or table[split] in (None, ""):
        known = ", ".join(k for k, v in table.items() if v not in (None, "")) or "none"
        raise UserError(
            f"dataset {_name(cfg)} has no split {split!r} (dataset.{key} configures: {known}). "
            f"Ask for one of those splits, or add dataset.{key}.{split}=..."
        )
    return str(table[split])


def _generated(cfg: dict, split: str, table: dict) -> list:
    """Examples or questions from the named generator."""
    return generated.generator(cfg.get("generator") or _name(cfg), table)(split)


def _check_generated_labels(examples: list[Example], names: tuple[str, ...], cfg: dict) -> None:
    """Raise UserError when a generator's labels do not fit the configured label names."""
    top = max((e.label for e in examples), default=0)
    if top >= len(names):
        raise UserError(
            f"dataset {_name(cfg)}: the generator emits labels 0..{top} but label_names has "
            f"{len(names)} names ({list(names)}). Give one name per label in dataset.label_names."
        )


def _check_not_empty(items: list, cfg: dict, split: str, origin: str) -> None:
    """Raise UserError when a split has no rows left."""
    if not items:
        drop = cfg.get("drop_labels") or []
        raise UserError(
            f"dataset {_name(cfg)}, split {split!r}: no examples left from {origin}"
            + (f" after dropping labels {drop}" if drop else "")
            + ". Check that the file holds data rows and that the filters, "
            "dataset.subjects / dataset.task or dataset.drop_labels, leave some."
        )


# ---------------------------------------------------------------- labels and text


def _norm(value: Any) -> str:
    """A label value as a comparable string: 1, 1.0 and "1" all become "1"."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _label_map(cfg: dict) -> dict[str, int]:
    """The configured raw-value -> label-id map, values given as ids or label names."""
    names = label_names(cfg)
    mapping = {}
    for raw, target in (cfg.get("label_map") or {}).items():
        index = _encode_label(_norm(target), names, {})
        if index is None:
            raise UserError(
                f"dataset {_name(cfg)}: label_map sends {raw!r} to {target!r}, which is neither a "
                f"label id 0..{len(names) - 1} nor one of label_names {list(names)}. Fix label_map."
            )
        mapping[_norm(raw)] = index
    return mapping


def _encode_label(key: str, names: Sequence[str], mapping: dict[str, int]) -> int | None:
    """Label id of a normalised raw value (label_map, then an id, then a name), or None."""
    if key in mapping:
        return mapping[key]
    if re.fullmatch(r"-?\d+", key):
        index = int(key)
        return index if 0 <= index < len(names) else None
    lowered = [n.lower() for n in names]
    return lowered.index(key.lower()) if key.lower() in lowered else None


def _bad_labels(bad: Counter, names: tuple[str, ...], cfg: dict, origin: str) -> UserError:
    """UserError listing label values outside the label set."""
    shown = ", ".join(f"{v!r} ({n} rows)" for v, n in bad.most_common(8))
    return UserError(
        f"dataset {_name(cfg)}: {origin} has labels outside the label set: {shown}. The labels "
        f"must be ids 0..{len(names) - 1} or names in label_names {list(names)}. Fix "
        "dataset.label_names, map the values with dataset.label_map, or drop those rows with "
        "dataset.drop_labels."
    )


def _template_fields(template: str) -> list[str]:
    """Field names used by a str.format template."""
    return [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]


def _required_columns(cfg: dict) -> list[str]:
    """Columns the config reads: text fields, template fields and the label field."""
    fields = list(cfg.get("text_fields") or [])
    fields += _template_fields(cfg.get("text_template") or "")
    if not fields or "" in fields or not cfg.get("label_field"):
        raise UserError(
            f"dataset {_name(cfg)}: set dataset.text_fields (a list of columns), "
            "dataset.label_field and optionally dataset.text_template with named fields such "
            'as "{sentence}" (empty {} fields are not allowed).'
        )
    return list(dict.fromkeys([*fields, cfg["label_field"]]))


def _check_columns(table: Table, columns: list[str], cfg: dict, origin: str) -> None:
    """Raise UserError when the table lacks configured columns."""
    missing = [c for c in columns if c not in table]
    if missing:
        raise UserError(
            f"dataset {_name(cfg)}: {origin} has columns {list(table)} but the config names "
            f"{columns} (missing: {missing}). Set dataset.text_fields, dataset.text_template and "
            "dataset.label_field to columns the data has."
        )


def _render(cfg: dict, row: dict[str, Any]) -> str:
    """Example text: the fields joined by `text_template` (newlines when it is null)."""
    values = {k: "" if v is None else str(v) for k, v in row.items()}
    template = cfg.get("text_template")
    if not template:
        return "\n".join(values[f] for f in cfg["text_fields"]).strip()
    return template.format_map(values).strip()


# ---------------------------------------------------------------- local files


def _no_data_dir(cfg: dict) -> UserError:
    """UserError for a local data set without a data_dir."""
    return UserError(
        f"dataset {_name(cfg)} reads local files but dataset.data_dir is not set. Point it at "
        f"the folder holding {_expected(cfg)}, e.g. dataset.data_dir=/path/to/folder."
    )


def _expected(cfg: dict) -> str:
    """The configured files, for messages."""
    files = cfg.get("files") or {}
    return ", ".join(f"{v} ({k})" for k, v in files.items()) or "the data files"


def _data_dir(cfg: dict) -> Path:
    """The configured data folder, checked to exist."""
    raw = cfg.get("data_dir")
    if raw in (None, "", "???"):
        raise _no_data_dir(cfg)
    path = Path(str(raw)).expanduser()
    if not path.is_dir():
        raise UserError(
            f"dataset {_name(cfg)}: data_dir {path} (absolute: {path.absolute()}) is not an "
            f"existing folder; it should hold {_expected(cfg)}. Fix dataset.data_dir "
            "(relative paths count from the working directory)."
        )
    return path


def _local_file(cfg: dict, split: str, **fields: str) -> Path:
    """The existing file for `split` under data_dir."""
    data_dir = _data_dir(cfg)
    path = data_dir / _split_entry(cfg, "files", split).format(**fields)
    if not path.is_file():
        raise UserError(
            f"dataset {_name(cfg)}, split {split!r}: file {path} does not exist. The config "
            f"expects {_expected(cfg)} under {data_dir}. Fix dataset.data_dir or dataset.files."
        )
    return path


def _local_table(cfg: dict, split: str) -> tuple[Table, str]:
    """The table of a local classification file."""
    path = _local_file(cfg, split)
    return read_table(path, cfg.get("format")), str(path)


def _malformed(path: Path, where: str, problem: str) -> UserError:
    """UserError for a file that cannot be parsed."""
    return UserError(
        f"The data file {path} is malformed{where}: {problem}. Fix or re-export the file "
        "(tsv files are read without quoting; csv files with standard double-quote quoting)."
    )


def _read_delimited(path: Path, fmt: str) -> Table:
    """Read a csv (quoted) or tsv (unquoted) file with a header row."""
    quoting = csv.QUOTE_NONE if fmt == "tsv" else csv.QUOTE_MINIMAL
    delimiter = "\t" if fmt == "tsv" else ","
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.reader(handle, delimiter=delimiter, quoting=quoting))
    except (UnicodeDecodeError, csv.Error) as err:
        raise _malformed(path, "", str(err)) from err
    if not rows:
        raise _malformed(path, "", "it is empty (no header row)")
    header = [h.strip() for h in rows[0]]
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise _malformed(path, f" at line {line}", f"{len(row)} fields, header has {header}")
    return {h: [row[j] for row in rows[1:]] for j, h in enumerate(header)}


def _read_jsonl(path: Path, _fmt: str) -> Table:
    """Read JSON lines (or one JSON list) of objects into columns."""
    try:
        text = path.read_text(encoding="utf-8-sig")
        lines = [(n, ln) for n, ln in enumerate(text.splitlines(), start=1) if ln.strip()]
        records = (
            json.loads(text)
            if text.lstrip().startswith("[")
            else [json.loads(ln) for _, ln in lines]
        )
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise _malformed(path, "", f"not valid JSON lines ({err})") from err
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise _malformed(path, "", "every record must be a JSON object")
    columns = list(dict.fromkeys(k for r in records for k in r))
    return {c: [r.get(c) for r in records] for c in columns}


def _read_parquet(path: Path) -> Table:
    """Read a parquet file into columns."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path).to_pydict()
    except (pa.ArrowException, OSError) as err:
        raise _malformed(path, "", str(err)) from err


# ---------------------------------------------------------------- hub


def _offline() -> bool:
    """Whether the Hugging Face libraries are told to stay offline."""
    return hub.offline(hub.DATASETS_OFFLINE)


def _hub_reachable(timeout: float = hub.PROBE_TIMEOUT_S) -> bool:
    """False when the hub cannot be contacted within `timeout` s (True offline: the cache serves)."""
    return _offline() or hub.reachable(timeout)


def _hub_error(cfg: dict, hub_id: str, err: BaseException | None) -> UserError:
    """UserError for a failed hub load: unreachable hub, or a wrong id/config/split."""
    reason = f"{type(err).__name__}: {str(err).splitlines()[0][:300]}" if err else "no connection"
    hint = _HUB_HINT + ("" if _offline() else "; with a cached copy, set HF_DATASETS_OFFLINE=1")
    if err is None or isinstance(err, ConnectionError | TimeoutError) or "reach" in reason.lower():
        return UserError(
            f"dataset {_name(cfg)}: could not reach the Hugging Face hub for {hub_id} ({reason}); "
            f"{hint}."
        )
    return UserError(
        f"dataset {_name(cfg)}: loading {hub_id} (config {cfg.get('hub_config')!r}) from the "
        f"Hugging Face hub failed ({reason}). Check dataset.hub_id, dataset.hub_config and "
        f"dataset.splits, or {hint}."
    )


def hub_load(cfg: dict, hub_config: str | None, hub_split: str) -> Any:
    """One split from the hub via datasets.load_dataset, or UserError when that fails."""
    hub_id = cfg.get("hub_id")
    if not hub_id:
        raise UserError(
            f"dataset {_name(cfg)} has no hub_id and no data_dir. Set dataset.data_dir to a local "
            "folder or dataset.hub_id to a Hugging Face data set."
        )
    if not _hub_reachable():
        raise _hub_error(cfg, hub_id, None)
    import datasets

    try:
        return datasets.load_dataset(hub_id, hub_config, split=hub_split)
    except Exception as err:  # datasets raises many types for one failure; report them all
        raise _hub_error(cfg, hub_id, err) from err


def _hub_table(cfg: dict, split: str) -> tuple[Table, str]:
    """The table of a hub classification split."""
    hub_split = _split_entry(cfg, "splits", split)
    dataset = hub_load(cfg, cfg.get("hub_config"), hub_split)
    return dataset.to_dict(), f"the hub split {cfg['hub_id']}:{hub_split}"


# ---------------------------------------------------------------- multiple choice


def _mc_reader(cfg: dict, source: str):
    """The reader for this config's multiple-choice format and source."""
    readers = {
        ("mmlu", "local"): _mmlu_local,
        ("mmlu", "hub"): _mmlu_hub,
        ("bigbench", "local"): _bigbench_local,
        ("bigbench", "hub"): _bigbench_hub,
    }
    fmt = cfg.get("format")
    if (fmt, source) not in readers:
        raise UserError(
            f"dataset {_name(cfg)}: multiple-choice format {fmt!r} is unknown; use "
            "dataset.format=mmlu or bigbench (or source=generated with a generator)."
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
