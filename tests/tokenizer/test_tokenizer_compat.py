"""Tokenizers saved by earlier releases still load: a tokenizer (with its RQ-VAE) saved by hf_semtok at 7ad18f2,
before the tokenizer package, the layout attribute and the manifest saves, is kept under tests/fixtures."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from transformers import AutoTokenizer

from hf_semtok import SemanticIDTokenizer
from hf_semtok.io_utils import FileSetError

FIXTURE = Path(__file__).parent / "fixtures" / "tokenizer_7ad18f2"
EXPECTED = json.loads((FIXTURE.parent / "tokenizer_7ad18f2.expected.json").read_text())


def _check(tok: SemanticIDTokenizer) -> None:
    assert isinstance(tok, SemanticIDTokenizer)
    assert len(tok) == EXPECTED["len"] and tok.sid_layout == "marked"
    assert tok.items_to_text(["item0", "item7"]) == EXPECTED["items_to_text"]
    assert tok.encode_items(["item3"]) == EXPECTED["encode"]
    assert list(tok.item_to_sid("item5")) == EXPECTED["sid"]
    embeddings = np.random.default_rng(0).normal(size=(40, 8)).astype("float32")  # as the fixture was made
    assert tok.sids_for_embeddings(embeddings[:3]).tolist() == EXPECTED["new_codes"]


def test_tokenizer_saved_by_7ad18f2_loads():
    _check(SemanticIDTokenizer.from_pretrained(FIXTURE))
    _check(AutoTokenizer.from_pretrained(FIXTURE))


def test_resaving_an_old_tokenizer_replaces_its_files_and_keeps_foreign_ones(tmp_path):
    folder = tmp_path / "old"
    shutil.copytree(FIXTURE, folder)
    (folder / "notes.txt").write_text("mine")
    tok = SemanticIDTokenizer.from_pretrained(folder)
    with pytest.raises(
        FileSetError, match="no hf_semtok save wrote.*overwrite=True"
    ):  # no manifest: not ours
        tok.save_pretrained(folder)
    tok.save_pretrained(folder, overwrite=True)
    assert (folder / "notes.txt").read_text() == "mine"
    _check(SemanticIDTokenizer.from_pretrained(folder))
