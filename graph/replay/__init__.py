"""Replay fleet: real recorded model results, served offline as LiteLLM's `replay/` provider.

`records` holds the format and the dataset, `convert` turns public routing datasets and the
feedback log into it, and `provider` answers `replay/<model>` calls from it. The provider
module imports litellm (seconds), so it is not imported here; use
`from graph.replay.provider import install`.
"""

from graph.replay.records import (
    Outcome,
    Record,
    ReplayDataset,
    ReplayFormatError,
    fleet_dir,
    load_task_contexts,
    read_records,
    write_records,
)

__all__ = [
    "Outcome",
    "Record",
    "ReplayDataset",
    "ReplayFormatError",
    "fleet_dir",
    "load_task_contexts",
    "read_records",
    "write_records",
]
