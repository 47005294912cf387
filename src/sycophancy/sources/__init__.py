"""Load classification and multiple-choice splits from the hub, local files or generators.

One module per kind of source: `tables` (local csv/tsv/jsonl/parquet), `hub` (Hugging Face data
sets), `multiple_choice` (MMLU, BIG-bench, sycophancy-eval JSONL), `ab` (Perez et al.'s A/B
JSONL), `generated` (built in code); `labels` turns tables into
examples, `common` holds the config helpers and checks, `loading` picks the source for a config.
"""

from sycophancy.sources.ab import load_ab
from sycophancy.sources.common import Table, limit_items
from sycophancy.sources.hub import hub_load
from sycophancy.sources.labels import label_names, table_to_examples
from sycophancy.sources.loading import load_classification, load_multiple_choice, resolve_source
from sycophancy.sources.tables import FORMATS, read_table

__all__ = [
    "FORMATS",
    "Table",
    "hub_load",
    "label_names",
    "limit_items",
    "load_ab",
    "load_classification",
    "load_multiple_choice",
    "read_table",
    "resolve_source",
    "table_to_examples",
]
