"""Notebooks are executed, so they never rot."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.conftest import REDIS_URL

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(path, tmp_path, monkeypatch, redis_client, prefix):
    monkeypatch.setenv("MODEL_SELECTOR_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FEEDBACK_LOG_PATH", str(tmp_path / "feedback.jsonl"))
    # a shell with a shared Redis set: the notebooks run on the embedded default anyway,
    # since their ratings would steer the shared learned policy (they once did)
    monkeypatch.setenv("REDIS_URL", REDIS_URL)
    monkeypatch.setenv("MODEL_SELECTOR_KEY_PREFIX", prefix)
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert os.path.exists(tmp_path / "feedback.jsonl")
    assert list(redis_client.scan_iter(match=f"{prefix}*")) == []


def test_there_are_notebooks():
    assert NOTEBOOKS
