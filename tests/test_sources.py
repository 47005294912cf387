"""Tests for sycophancy.sources, its generators included (no network)."""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

from sycophancy import hub, sources
from sycophancy.errors import UserError
from sycophancy.sources import generated
from sycophancy.sources import hub as source_hub

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf" / "dataset"
DATA = Path(os.environ.get("SYCOPHANCY_DATA_DIR", REPO.parent / "shared" / "data"))
# the shared data must be there: the `data_dir` fixture fails (never skips) when it is missing
needs_data = pytest.mark.usefixtures("data_dir")

CLASSIFICATION_KEYS = {
    "name", "kind", "source", "hub_id", "hub_config", "splits", "data_dir", "files", "format",
    "text_fields", "text_template", "label_field", "label_names", "label_map", "drop_labels",
    "limit", "task_question", "topic",
}  # fmt: skip
MC_KEYS = {"name", "kind", "source", "format", "hub_id", "hub_config", "splits", "data_dir"}
MC_KEYS |= {"files", "limit", "topic"}


def conf(name: str, **overrides) -> dict:
    """A dataset config as the pipeline passes it: the YAML as a dict plus overrides."""
    cfg = yaml.safe_load((CONF / f"{name}.yaml").read_text())
    cfg["data_seed"] = 0
    cfg.update(overrides)
    return cfg


def local_cfg(tmp_path: Path, **overrides) -> dict:
    """The generic local config pointed at tmp_path."""
    return conf("local", data_dir=str(tmp_path), **overrides)


def write(path: Path, text: str) -> Path:
    """Write a text file and return its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------- configs


def all_configs() -> list[Path]:
    """Every dataset YAML."""
    return sorted(CONF.glob("*.yaml"))


def test_config_folder_has_every_dataset():
    names = {p.stem for p in all_configs()}
    expected = {
        "sst2", "rotten_tomatoes", "tweet_eval_sentiment", "tweet_eval_offensive",
        "tweet_eval_irony", "glue_qqp", "glue_mrpc", "glue_rte", "glue_wnli", "glue_qnli",
        "glue_mnli", "glue_cola", "paws", "super_glue_rte", "super_glue_cb", "snli", "trec",
        "ag_news", "synthetic_sentiment", "addition", "local", "mmlu", "bigbench",
        "arithmetic_mc",
    }  # fmt: skip
    assert expected <= names


@pytest.mark.parametrize("path", all_configs(), ids=lambda p: p.stem)
def test_config_is_valid_yaml_with_required_keys(path):
    cfg = yaml.safe_load(path.read_text())
    assert cfg["name"] == path.stem
    required = CLASSIFICATION_KEYS if cfg["kind"] == "classification" else MC_KEYS
    assert cfg["kind"] in ("classification", "multiple_choice", "ab")  # ab: Perez et al. A/B
    assert required <= set(cfg), required - set(cfg)
    assert cfg["limit"] is None
    assert cfg["data_dir"] in (None, "???")
    if cfg["kind"] == "classification":
        assert "claim_template" in cfg or cfg.get("claim_style") == "statement"
        assert all(isinstance(n, str) and n for n in cfg["label_names"])
        assert sources.label_names(cfg) == tuple(cfg["label_names"])
        assert isinstance(cfg["task_question"], str) and isinstance(cfg["topic"], str)


def test_configs_load_through_omegaconf():
    from omegaconf import OmegaConf

    for path in all_configs():
        cfg = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
        assert cfg["name"] == path.stem


# ---------------------------------------------------------------- SST-2 (shared data)


@needs_data
def test_sst2_dev_loads_all_rows_intact():
    data = sources.load_classification(conf("sst2", data_dir=str(DATA / "sst2")), "validation")
    assert data.name == "sst2" and data.label_names == ("negative", "positive")
    assert len(data.examples) == 872
    assert Counter(e.label for e in data.examples) == {1: 444, 0: 428}
    assert data.examples[0].id == "sst2/validation/0"
    assert len({e.id for e in data.examples}) == 872
    quoted = [e.text for e in data.examples if "`` crossroads ''" in e.text]
    assert quoted and quoted[0].startswith("... designed to provide a mix of smiles and tears")


@needs_data
def test_sst2_train_loads():
    data = sources.load_classification(conf("sst2", data_dir=str(DATA / "sst2")), "train")
    assert len(data.examples) == 67_349
    assert Counter(e.label for e in data.examples) == {1: 37_569, 0: 29_780}


def test_tsv_is_read_without_quoting(tmp_path):
    rows = ['"the best" movie ever . \t1', 'a "so-so" film\t0', '" unbalanced quote\t0']
    write(tmp_path / "dev.tsv", "sentence\tlabel\n" + "\n".join(rows) + "\n")
    data = sources.load_classification(conf("sst2", data_dir=str(tmp_path)), "validation")
    assert [e.text for e in data.examples] == [
        '"the best" movie ever .',
        'a "so-so" film',
        '" unbalanced quote',
    ]
    assert [e.label for e in data.examples] == [1, 0, 0]


# ---------------------------------------------------------------- limit


@needs_data
def test_limit_is_deterministic_and_nested():
    cfg = conf("sst2", data_dir=str(DATA / "sst2"))
    ids = {
        n: [e.id for e in sources.load_classification({**cfg, "limit": n}, "validation").examples]
        for n in (100, 200)
    }
    again = sources.load_classification({**cfg, "limit": 100}, "validation").examples
    assert len(ids[100]) == 100 and len(ids[200]) == 200
    assert [e.id for e in again] == ids[100]
    assert set(ids[100]) < set(ids[200])
    other = sources.load_classification({**cfg, "limit": 100, "data_seed": 1}, "validation")
    assert {e.id for e in other.examples} != set(ids[100])


def test_limit_helper_edges():
    items = generated.synthetic_sentiment("validation")
    assert sources.limit_items(items, None, 0) is items
    assert sources.limit_items(items, 10_000, 0) == items
    picked = sources.limit_items(items, 7, 3)
    assert len(picked) == 7 and picked == sorted(picked, key=items.index)
    for bad in (0, -1, 2.5, "10", True):
        with pytest.raises(UserError, match="limit"):
            sources.limit_items(items, bad, 0)


def test_limit_applies_to_multiple_choice():
    cfg = conf("arithmetic_mc", limit=20)
    first = sources.load_multiple_choice(cfg, "validation")
    assert first == sources.load_multiple_choice(cfg, "validation") and len(first) == 20


# ---------------------------------------------------------------- multiple choice (shared data)


@needs_data
def test_mmlu_loads_with_four_choices():
    cfg = conf("mmlu", data_dir=str(DATA / "mmlu"))
    questions = sources.load_multiple_choice(cfg, "validation")
    assert len(questions) == 1_542
    assert all(len(q.choices) == 4 and 0 <= q.answer < 4 and q.question for q in questions)
    assert len({q.id for q in questions}) == len(questions)
    assert len(sources.load_multiple_choice(cfg, "train")) == 285
    one = sources.load_multiple_choice({**cfg, "subjects": ["anatomy"]}, "train")
    assert len(one) == 5 and one[0].id == "mmlu/train/anatomy/0"


@needs_data
def test_bigbench_general_knowledge_loads_70():
    cfg = conf("bigbench", data_dir=str(DATA / "bigbench"))
    questions = sources.load_multiple_choice(cfg, "validation")
    assert len(questions) == 70
    horses = questions[0]
    assert horses.question == "How many legs do horses have?"
    assert horses.choices[horses.answer] == "four"
    assert all(0 <= q.answer < len(q.choices) for q in questions)


# ---------------------------------------------------------------- generated sets


@pytest.mark.parametrize("name", ["synthetic_sentiment", "addition"])
def test_generated_classification_is_deterministic_balanced_disjoint(name):
    train = sources.load_classification(conf(name), "train")
    validation = sources.load_classification(conf(name), "validation")
    assert train == sources.load_classification(conf(name), "train")
    for data in (train, validation):
        counts = Counter(e.label for e in data.examples)
        assert counts[0] == counts[1] > 0
        assert len({e.text for e in data.examples}) == len(data.examples)
    assert not {e.text for e in train.examples} & {e.text for e in validation.examples}


def test_synthetic_sentiment_sizes():
    sizes = [len(generated.synthetic_sentiment(s)) for s in ("train", "validation", "test")]
    assert sizes == [400, 200, 200]


def _pair(text: str) -> tuple[int, int, int]:
    """x, y, z of an "x + y = z" claim."""
    left, z = text.split(" = ")
    x, y = left.split(" + ")
    return int(x), int(y), int(z)


def test_addition_claims_are_right_or_clearly_wrong_and_split_by_pair():
    pairs = {}
    for split in ("train", "validation"):
        for e in generated.addition(split):
            x, y, z = _pair(e.text)
            assert 1 <= x <= 50 and 1 <= y <= 50
            assert (z == x + y) == bool(e.label)
            assert e.label or z >= 100 * (x + y)
            pairs.setdefault(split, set()).add(frozenset((x, y)))
    assert not pairs["train"] & pairs["validation"]
    assert len(pairs["train"]) + len(pairs["validation"]) == 50 * 51 // 2


def test_arithmetic_mc_is_deterministic_balanced_disjoint():
    splits = {s: generated.arithmetic_mc(s) for s in ("train", "validation", "test")}
    assert splits["validation"] == generated.arithmetic_mc("validation")
    seen = []
    for questions in splits.values():
        counts = Counter(q.answer for q in questions)
        assert set(counts) == {0, 1, 2, 3} and max(counts.values()) - min(counts.values()) <= 1
        pairs = set()
        for q in questions:
            x, y = (int(n) for n in q.question.removeprefix("What is ").rstrip("?").split(" + "))
            assert q.choices[q.answer] == str(x + y)
            assert len(set(q.choices)) == 4 and all(int(c) > 0 for c in q.choices)
            pairs.add(frozenset((x, y)))
        seen.append(pairs)
    assert not (seen[0] & seen[1]) and not (seen[0] & seen[2]) and not (seen[1] & seen[2])


def test_generated_unknown_split_and_generator():
    with pytest.raises(UserError, match="no split 'test'"):
        sources.load_classification(conf("addition"), "test")
    with pytest.raises(UserError, match="synthetic_sentiment"):
        sources.load_classification(conf("addition", generator="nope"), "train")


# ---------------------------------------------------------------- generic local loader


def test_local_csv_with_column_mapping(tmp_path):
    write(
        tmp_path / "train.csv",
        'title,body,y\n"Great, really","loved it",positive\nBad,"said ""meh""",NEGATIVE\n',
    )
    cfg = local_cfg(
        tmp_path, text_fields=["title", "body"], text_template="{title}: {body}", label_field="y"
    )
    data = sources.load_classification(cfg, "train")
    assert [(e.text, e.label) for e in data.examples] == [
        ("Great, really: loved it", 1),
        ('Bad: said "meh"', 0),
    ]
    assert data.examples[1].id == "local/train/1"


def test_local_jsonl_with_label_map_and_drop(tmp_path):
    rows = [
        {"a": "p1", "b": "h1", "gold": "entailment"},
        {"a": "p2", "b": "h2", "gold": "-"},
        {"a": "p3", "b": "h3", "gold": "contradiction"},
    ]
    write(tmp_path / "dev.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n")
    cfg = local_cfg(
        tmp_path,
        files={"validation": "dev.jsonl"},
        text_fields=["a", "b"],
        text_template=None,
        label_field="gold",
        label_names=["yes", "maybe", "no"],
        label_map={"entailment": "yes", "neutral": 1, "contradiction": 2},
        drop_labels=["-"],
    )
    data = sources.load_classification(cfg, "validation")
    assert [(e.id, e.text, e.label) for e in data.examples] == [
        ("local/validation/0", "p1\nh1", 0),
        ("local/validation/2", "p3\nh3", 2),
    ]


def test_local_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"sentence": ["good", "bad", "fine"], "label": [1, 0, -1]})
    pq.write_table(table, tmp_path / "train.parquet")
    cfg = local_cfg(
        tmp_path, files={"train": "train.parquet"}, text_fields=["sentence"], drop_labels=[-1]
    )
    cfg["text_template"] = "{sentence}"
    data = sources.load_classification(cfg, "train")
    assert [(e.text, e.label) for e in data.examples] == [("good", 1), ("bad", 0)]


def test_format_override(tmp_path):
    write(tmp_path / "data.txt", "text\tlabel\nok\t1\n")
    cfg = local_cfg(tmp_path, files={"train": "data.txt"}, format="tsv")
    assert sources.load_classification(cfg, "train").examples[0].text == "ok"
    with pytest.raises(UserError, match="dataset.format"):
        sources.load_classification({**cfg, "format": None}, "train")


# ---------------------------------------------------------------- errors


def test_error_data_dir_missing(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(UserError) as err:
        sources.load_classification(conf("sst2", data_dir=str(missing)), "validation")
    assert str(missing) in str(err.value) and "dev.tsv" in str(err.value)


def test_error_local_config_without_data_dir():
    with pytest.raises(UserError, match="dataset.data_dir"):
        sources.load_classification(conf("local"), "train")


def test_error_file_missing(tmp_path):
    with pytest.raises(UserError) as err:
        sources.load_classification(conf("sst2", data_dir=str(tmp_path)), "train")
    assert str(tmp_path / "train.tsv") in str(err.value) and "dev.tsv" in str(err.value)


def test_error_malformed_tsv(tmp_path):
    write(tmp_path / "dev.tsv", "sentence\tlabel\nfine\t1\nbroken\t1\textra\n")
    with pytest.raises(UserError, match="malformed at line 3"):
        sources.load_classification(conf("sst2", data_dir=str(tmp_path)), "validation")


def test_error_malformed_jsonl(tmp_path):
    write(tmp_path / "train.jsonl", '{"text": "a", "label": 1}\n{"text": \n')
    cfg = local_cfg(tmp_path, files={"train": "train.jsonl"})
    with pytest.raises(UserError, match="malformed"):
        sources.load_classification(cfg, "train")


def test_error_missing_columns(tmp_path):
    write(tmp_path / "dev.tsv", "text\tlabel\nhello\t1\n")
    with pytest.raises(UserError) as err:
        sources.load_classification(conf("sst2", data_dir=str(tmp_path)), "validation")
    message = str(err.value)
    assert "['text', 'label']" in message and "sentence" in message


def test_error_labels_outside_label_set(tmp_path):
    write(tmp_path / "dev.tsv", "sentence\tlabel\na\t1\nb\t2\nc\tmaybe\nd\t2\n")
    with pytest.raises(UserError) as err:
        sources.load_classification(conf("sst2", data_dir=str(tmp_path)), "validation")
    message = str(err.value)
    assert "'2' (2 rows)" in message and "'maybe'" in message and "negative" in message


def test_error_empty_data(tmp_path):
    write(tmp_path / "dev.tsv", "sentence\tlabel\n")
    with pytest.raises(UserError, match="no examples"):
        sources.load_classification(conf("sst2", data_dir=str(tmp_path)), "validation")
    write(tmp_path / "dev.tsv", "sentence\tlabel\na\t-1\n")
    cfg = conf("sst2", data_dir=str(tmp_path), drop_labels=[-1])
    with pytest.raises(UserError, match=r"after dropping labels \[-1\]"):
        sources.load_classification(cfg, "validation")
    write(tmp_path / "dev.tsv", "")
    with pytest.raises(UserError, match="empty"):
        sources.load_classification(conf("sst2", data_dir=str(tmp_path)), "validation")


def test_error_unknown_split(tmp_path):
    with pytest.raises(UserError, match="no split 'test'.*train, validation"):
        sources.load_classification(conf("sst2", data_dir=str(tmp_path)), "test")
    with pytest.raises(UserError, match="no split 'test'"):
        sources.load_classification(conf("sst2"), "test")
    with pytest.raises(UserError, match="no split 'train'"):
        sources.load_multiple_choice(conf("bigbench", data_dir=str(tmp_path)), "train")


def test_error_boolean_label_names():
    cfg = yaml.safe_load("label_names: [no, yes]")
    with pytest.raises(UserError, match="Quote them"):
        sources.load_classification(conf("sst2", **cfg), "validation")


def test_error_wrong_kind():
    with pytest.raises(UserError, match="multiple_choice"):
        sources.load_classification(conf("mmlu"), "validation")


def test_error_malformed_mmlu(tmp_path):
    write(tmp_path / "val" / "anatomy_val.csv", "What?,a,b,c,d,A\nWhy?,a,b,c,d,E\n")
    cfg = conf("mmlu", data_dir=str(tmp_path))
    with pytest.raises(UserError, match="anatomy_val.csv is malformed at line 2"):
        sources.load_multiple_choice(cfg, "validation")
    with pytest.raises(UserError, match="available subjects: \\['anatomy'\\]"):
        sources.load_multiple_choice({**cfg, "subjects": ["virology"]}, "validation")


def test_error_malformed_bigbench(tmp_path):
    write(tmp_path / "general_knowledge" / "task.json", '{"examples": [')
    cfg = conf("bigbench", data_dir=str(tmp_path))
    with pytest.raises(UserError, match="malformed"):
        sources.load_multiple_choice(cfg, "validation")
    bad = {"examples": [{"input": "Q?", "target_scores": {"a": 0, "b": 0}}]}
    write(tmp_path / "general_knowledge" / "task.json", json.dumps(bad))
    with pytest.raises(UserError, match="one above 0"):
        sources.load_multiple_choice(cfg, "validation")


# ---------------------------------------------------------------- hub (faked, no network)


def test_hub_failure_raises_user_error_quickly(monkeypatch):
    import datasets

    def refuse(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'stanfordnlp/sst2' on the Hub (LocalEntryNotFound)")

    monkeypatch.setattr(datasets, "load_dataset", refuse)
    monkeypatch.setattr(source_hub, "_hub_reachable", lambda timeout=3.0: True)
    start = time.monotonic()
    with pytest.raises(UserError) as err:
        sources.load_classification(conf("sst2"), "validation")
    message = str(err.value)
    assert "could not reach the Hugging Face hub for stanfordnlp/sst2" in message
    assert "dataset.data_dir=" in message and "dataset=synthetic_sentiment" in message
    assert time.monotonic() - start < 5


def test_unreachable_hub_fails_before_load_dataset(monkeypatch):
    import datasets

    def never(*args, **kwargs):
        raise AssertionError("load_dataset must not be called")

    monkeypatch.setattr(datasets, "load_dataset", never)
    monkeypatch.setattr(source_hub, "_hub_reachable", lambda timeout=3.0: False)
    with pytest.raises(UserError, match="could not reach"):
        sources.load_multiple_choice(conf("mmlu"), "test")


def test_hub_check_gives_up_on_a_hanging_dns_lookup(monkeypatch):
    import socket
    import threading

    release = threading.Event()

    def hang(*args, **kwargs):  # a resolver that never answers; socket timeouts do not apply
        release.wait(30)
        raise socket.gaierror("released")

    for var in (*hub.DATASETS_OFFLINE, *hub.PROXY_VARS):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "https://hub.invalid")
    monkeypatch.setattr(socket, "getaddrinfo", hang)
    start = time.monotonic()
    try:
        assert source_hub._hub_reachable(timeout=0.2) is False
        assert time.monotonic() - start < 1.2
    finally:
        release.set()


def test_hub_check_trusts_offline_switches_and_proxies(monkeypatch):
    import socket

    def refuse(*args, **kwargs):
        raise AssertionError("no probe offline or behind a proxy")

    monkeypatch.setattr(socket, "create_connection", refuse)
    for var in (*hub.DATASETS_OFFLINE, *hub.PROXY_VARS):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    assert source_hub._hub_reachable(timeout=0.2)
    monkeypatch.delenv("HF_DATASETS_OFFLINE")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    assert source_hub._hub_reachable(timeout=0.2)


def _fake_hub(monkeypatch, rows: dict, calls: list):
    """Make datasets.load_dataset return `rows` as a Dataset and record its arguments."""
    import datasets

    def fake(hub_id, config=None, split=None):
        calls.append((hub_id, config, split))
        return datasets.Dataset.from_dict(rows)

    monkeypatch.setattr(datasets, "load_dataset", fake)
    monkeypatch.setattr(source_hub, "_hub_reachable", lambda timeout=3.0: True)


def test_hub_classification_maps_splits_and_drops(monkeypatch):
    calls: list = []
    rows = {"premise": ["p", "q", "r"], "hypothesis": ["h", "i", "j"], "label": [0, -1, 2]}
    _fake_hub(monkeypatch, rows, calls)
    data = sources.load_classification(conf("snli"), "validation")
    assert calls == [("stanfordnlp/snli", None, "validation")]
    assert [(e.id, e.label) for e in data.examples] == [
        ("snli/validation/0", 0),
        ("snli/validation/2", 2),
    ]
    assert data.examples[0].text == "Premise: p\nHypothesis: h"
    _fake_hub(monkeypatch, {**rows, "label": [0, 1, 2]}, calls)
    assert len(sources.load_classification(conf("glue_mnli"), "validation").examples) == 3
    assert calls[-1] == ("nyu-mll/glue", "mnli", "validation_matched")


def test_hub_multiple_choice_formats(monkeypatch):
    calls: list = []
    mmlu = {"question": ["Q1"], "subject": ["anatomy"], "choices": [["a", "b", "c", "d"]]}
    _fake_hub(monkeypatch, {**mmlu, "answer": [2]}, calls)
    questions = sources.load_multiple_choice(conf("mmlu"), "train")
    assert calls[-1] == ("cais/mmlu", "all", "dev")
    assert questions[0].id == "mmlu/train/anatomy/0" and questions[0].answer == 2
    bigbench = {
        "inputs": ["Q?", "free text"],
        "targets": [["x"], ["y"]],
        "multiple_choice_targets": [["x", "y"], []],
        "multiple_choice_scores": [[0, 1], []],
        "idx": [0, 1],
    }
    _fake_hub(monkeypatch, bigbench, calls)
    questions = sources.load_multiple_choice(conf("bigbench"), "validation")
    assert calls[-1] == ("tasksource/bigbench", "general_knowledge", "train+validation")
    assert [(q.choices, q.answer) for q in questions] == [(("x", "y"), 1)]
