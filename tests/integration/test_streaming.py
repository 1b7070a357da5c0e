"""Token streaming through LangGraph's `messages` stream mode, as an agent's UI would use it:
the reply arrives in pieces from call_model, and nothing reaches for the Hugging Face hub."""

from __future__ import annotations

import litellm.utils
import pytest

from graph.state import RunSettings
from tests.conftest import PORT_HEALER

REPLY = "fuser -k 8080/tcp && systemctl restart api"
REQUEST = {"context": PORT_HEALER, "prompt": "free port 8080"}


@pytest.fixture
def hub_lookups(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every model LiteLLM tried to fetch a Hugging Face tokenizer for."""
    asked: list[str] = []

    def fetch(model: str, *args: object, **kwargs: object) -> None:
        asked.append(model)
        raise AssertionError(f"tokenizer fetched from the hub for {model}")

    monkeypatch.setattr(litellm.utils, "_return_huggingface_tokenizer", fetch)
    return asked


MODES = ["messages", "updates", "values"]


def _split(chunks: list[tuple[str, object]]) -> tuple[list[str], dict, dict]:
    """The reply's pieces, the tokens call_model recorded, and the final values."""
    messages = [chunk for mode, chunk in chunks if mode == "messages"]
    pieces = [msg.content for msg, meta in messages
              if meta["langgraph_node"] == "call_model" and msg.content]
    [usage] = [c["call_model"]["usage"] for mode, c in chunks
               if mode == "updates" and "call_model" in c]
    [final] = [chunk for mode, chunk in chunks if mode == "values"][-1:]
    return pieces, usage, final


def test_the_reply_streams_in_pieces_without_a_hub_download(selection, hub_lookups):
    chunks = list(selection.stream(REQUEST, context=RunSettings(mock_responses={"*": REPLY}),
                                   stream_mode=MODES))
    pieces, usage, final = _split(chunks)
    assert len(pieces) > 1 and "".join(pieces) == REPLY
    assert final["success"] and final["response"] == REPLY
    assert final["model_used"] == "llama-3.3-70b-versatile"  # a Llama: LiteLLM's hub case
    assert usage["output_tokens"] > 1 and usage["input_tokens"] > 1  # counted, by tiktoken
    assert hub_lookups == []


async def test_astream_streams_the_reply_too(selection, hub_lookups):
    chunks = [c async for c in selection.astream(
        REQUEST, context=RunSettings(mock_responses={"*": REPLY}),
        stream_mode=MODES)]
    pieces, _, final = _split(chunks)
    assert len(pieces) > 1 and "".join(pieces) == REPLY and final["response"] == REPLY
    assert hub_lookups == []
