"""What the adapter reads: the query survives the encoder's cut to `adapter.max_length`."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from transformers import AutoTokenizer

from hydralm.data import synthesize
from hydralm.model import default_encoder_path
from hydralm.pipeline import adapter_pairs
from hydralm.retrieval import bm25_top_k
from hydralm.tasks import get_task


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(default_encoder_path(), local_files_only=True)


@pytest.mark.parametrize("name", ["synth-tag", "synth-title", "synth-rate"])
def test_the_adapter_reads_the_query_after_the_cut(tokenizer, name):
    """A 4-item RAG prompt is longer than the eval configs' adapter `max_length` on every
    synthetic task; the cut pair still holds the whole query text, then as many history items
    as fit."""
    task = get_task(name)
    config = Path(__file__).parents[3] / "configs" / f"eval-{name}.yaml"
    max_length = yaml.safe_load(config.read_text())["adapter"]["max_length"]
    record = synthesize(name, 1, seed=3, queries_per_user=1, items_per_user=16)[0]
    docs = [task.item_text(item) for item in record.profile]
    top = [record.profile[i] for i in bm25_top_k(task.query_text(record.input), docs, k=4)]
    prompt = task.rag_prompt(record.input, top)
    firsts, seconds = adapter_pairs(task, record.input, prompt, ["candidate one", "two"])
    assert seconds == ["candidate one", "two"] and firsts[0] == firsts[1]

    def kept(first: str, second: str) -> str:
        ids = tokenizer(first, second, truncation="longest_first",
                        max_length=max_length)["input_ids"]
        return tokenizer.decode(ids, skip_special_tokens=True)

    query = tokenizer.decode(tokenizer(task.query_text(record.input),
                                       add_special_tokens=False)["input_ids"])
    assert len(tokenizer(prompt)["input_ids"]) > max_length       # the cut is real
    assert query not in kept(prompt, "candidate one")             # the prompt alone loses it
    assert kept(firsts[0], seconds[0]).startswith(query)          # the pair keeps it
