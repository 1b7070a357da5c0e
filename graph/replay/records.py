"""The replay format: real per-prompt model results, one JSON object per line.

A record holds one prompt and, per model, what calling that model on it produced: a score
in [0, 1], the USD the call cost, and where known the response text and latency. Records
are read and written as JSONL (gzip when the name ends in `.gz`) so that a fleet of models
can be replayed offline and a routing policy can be scored against what really happened.
See docs/replay.md for the field reference.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from graph.context import TaskContext
from graph.registry import default_config_dir

Score = Annotated[float, Field(ge=0.0, le=1.0)]
NonNegative = Annotated[float, Field(ge=0.0)]


class ReplayFormatError(ValueError):
    """A replay file that cannot be used; the message names file, line and reason."""


class Record(BaseModel):
    """One prompt and what each model did with it.

    A model may have a cost (and a response) but no score: the call was made and paid
    for but not graded (RouterBench has a few). Every scored model must have a cost.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    id: str = Field(min_length=1)
    prompt: str = Field(min_length=1)
    task: str = Field(min_length=1)
    scores: dict[str, Score]
    cost_usd: dict[str, NonNegative] = Field(min_length=1)
    responses: dict[str, str] = Field(default_factory=dict)
    latency_ms: dict[str, NonNegative] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _models_agree(self) -> Record:
        for name in ("scores", "responses", "latency_ms"):
            extra = set(getattr(self, name)) - set(self.cost_usd)
            if extra:
                raise ValueError(f"{name} names models without a cost_usd: {sorted(extra)}")
        return self

    @property
    def models(self) -> tuple[str, ...]:
        """The models that were called on this prompt (those with a recorded cost)."""
        return tuple(self.cost_usd)

    def to_json(self) -> dict[str, Any]:
        """The record as written to a line (optional empty fields left out)."""
        return self.model_dump(exclude_defaults=True)


def _explain(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"])
        parts.append(f"{where}: {err['msg']}" if where else err["msg"])
    return "; ".join(parts)


@contextlib.contextmanager
def _open_text(path: Path, mode: str) -> Iterator[IO[str]]:
    with path.open(mode + "b") as raw:
        if path.suffix != ".gz":
            with io.TextIOWrapper(raw, encoding="utf-8", newline="\n") as fh:
                yield fh
            return
        # No file name and mtime 0 in the gzip header: the same records give the same bytes.
        with (
            gzip.GzipFile("", mode + "b", fileobj=raw, mtime=0) as gz,
            io.TextIOWrapper(gz, encoding="utf-8", newline="\n") as fh,
        ):
            yield fh


def read_records(path: str | Path) -> Iterator[Record]:
    """Yield the records of a JSONL file (gzip when the name ends in `.gz`).

    Raises:
        ReplayFormatError: on the first bad line, naming file, line number and reason.
    """
    path = Path(path)
    if path.is_dir():
        raise ReplayFormatError(f"{path}: is a directory, not a replay file (.jsonl or .jsonl.gz;"
                                " RouterBench CSV folders go with --dataset routerbench)")
    if not path.is_file():
        raise ReplayFormatError(f"{path}: file not found")
    with _open_text(path, "r") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ReplayFormatError(f"{path}:{number}: not valid JSON: {exc.msg}") from None
            if not isinstance(data, dict):
                raise ReplayFormatError(f"{path}:{number}: expected a JSON object")
            try:
                yield Record.model_validate(data)
            except ValidationError as exc:
                raise ReplayFormatError(f"{path}:{number}: {_explain(exc)}") from None


def write_records(path: str | Path, records: Iterable[Record]) -> int:
    """Write records as JSONL (gzip when the name ends in `.gz`); returns how many.

    Output is deterministic (gzip mtime 0), so a re-conversion produces the same bytes.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with _open_text(path, "w") as fh:
        for record in records:
            fh.write(json.dumps(record.to_json(), ensure_ascii=False, separators=(",", ":")))
            fh.write("\n")
            count += 1
    return count


@dataclass(frozen=True, slots=True)
class Outcome:
    """Mean score and cost of a routing policy over a dataset."""

    mean_score: float
    cost_per_1k: float
    """USD per 1,000 requests (1000 x mean cost per request)."""
    prompts: int


class ReplayDataset:
    """Records indexed by id and by exact prompt text (the provider's lookup key).

    Where two records share a prompt, the first one answers prompt lookups.
    """

    def __init__(self, records: Iterable[Record], source: str = "") -> None:
        self.records: tuple[Record, ...] = tuple(records)
        self.source = source
        self._by_id: dict[str, Record] = {}
        self._by_prompt: dict[str, Record] = {}
        for record in self.records:
            if record.id in self._by_id:
                raise ReplayFormatError(f"{source or 'dataset'}: duplicate id {record.id!r}")
            self._by_id[record.id] = record
            self._by_prompt.setdefault(record.prompt, record)
        self.models: tuple[str, ...] = tuple(sorted({m for r in self.records for m in r.models}))
        self.tasks: tuple[str, ...] = tuple(sorted({r.task for r in self.records}))

    @classmethod
    def load(cls, path: str | Path) -> ReplayDataset:
        """Read a replay file into a dataset."""
        return cls(read_records(path), source=str(path))

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[Record]:
        return iter(self.records)

    def by_id(self, record_id: str) -> Record:
        """The record with this id (KeyError when absent)."""
        return self._by_id[record_id]

    def by_prompt(self, prompt: str) -> Record | None:
        """The record whose prompt is exactly this text, or None."""
        return self._by_prompt.get(prompt)

    def model_outcome(self, model: str) -> Outcome:
        """Always routing to `model`: mean score over graded prompts, cost over all calls."""
        scores = [r.scores[model] for r in self.records if model in r.scores]
        costs = [r.cost_usd[model] for r in self.records if model in r.cost_usd]
        if not costs:
            raise KeyError(model)
        mean = sum(scores) / len(scores) if scores else 0.0
        return Outcome(mean, 1000 * sum(costs) / len(costs), len(costs))

    def oracle(self) -> Outcome:
        """Per prompt the best-scoring model, ties to the cheapest: the routing ceiling."""
        picked = []
        for record in self.records:
            if record.scores:
                best = min(record.scores, key=lambda m: (-record.scores[m], record.cost_usd[m]))
                picked.append((record.scores[best], record.cost_usd[best]))
        if not picked:
            return Outcome(0.0, 0.0, 0)
        n = len(picked)
        return Outcome(sum(s for s, _ in picked) / n, 1000 * sum(c for _, c in picked) / n, n)


def load_task_contexts(path: str | Path) -> dict[str, TaskContext]:
    """A fleet's `tasks.yaml`: dataset task name -> the TaskContext an agent would send."""
    path = Path(path)
    with path.open(encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    tasks = data.get("tasks") if isinstance(data, Mapping) else None
    if not isinstance(tasks, Mapping) or not tasks:
        raise ReplayFormatError(f"{path}: expected a non-empty 'tasks' mapping")
    out: dict[str, TaskContext] = {}
    for name, raw in tasks.items():
        try:
            out[str(name)] = TaskContext.model_validate(raw)
        except ValidationError as exc:
            raise ReplayFormatError(f"{path}: tasks.{name}: {_explain(exc)}") from None
    return out


def fleet_dir(name: str) -> Path:
    """`config/replay/<name>` (llmrouter, routerbench) of the checkout or installed package."""
    return default_config_dir() / "replay" / name
