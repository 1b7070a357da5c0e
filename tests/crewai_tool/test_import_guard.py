"""Without CrewAI installed, importing the tool fails at once, saying how to install it."""

from __future__ import annotations

import importlib
import sys

import pytest


def test_import_without_crewai_says_which_extra_to_install() -> None:
    sys.modules.pop("graph.crewai_tool", None)
    try:
        importlib.import_module("graph.crewai_tool")
    except ImportError as exc:
        assert "pip install 'model-selector[crewai]'" in str(exc)
    else:
        pytest.skip("crewai is installed here: tests/crewai_tool/run_crewai_check.sh covers the tool")
