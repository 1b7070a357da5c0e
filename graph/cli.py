"""`model-selector`: select (dry run), run, rate, registry, health, evaluate.

Bad input ends with one line on stderr and exit code 2, never a traceback. `select`,
`rate`, `registry` and `health` never import litellm or LangGraph, so they answer fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import get_args

from graph import cli_commands as cmd
from graph.context import Complexity, Domain, Priority

DOMAINS = get_args(Domain)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (the usage is one `--help` away)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def _task_args(p: argparse.ArgumentParser, *, prompt_required: bool) -> None:
    p.add_argument("--task-type", required=True)
    p.add_argument("--domain", required=True, choices=DOMAINS)
    p.add_argument("--complexity", required=True, choices=get_args(Complexity))
    p.add_argument("--priority", required=True, choices=get_args(Priority))
    p.add_argument("--max-cost-usd", type=float)
    p.add_argument("--max-latency-ms", type=int)
    p.add_argument("--require-local", action="store_true")
    p.add_argument("--keywords", default="", help="comma-separated")
    p.add_argument("--agent-id", default="")
    p.add_argument("--agent-category", default="")
    p.add_argument("--prompt", required=prompt_required)
    p.add_argument("--system-prompt")
    p.add_argument("--max-tokens", type=cmd.count, default=4096)
    p.add_argument("--top-k", type=cmd.count, default=3)
    p.add_argument("--json", action="store_true", help="machine-readable output")


def parser() -> argparse.ArgumentParser:
    """The command line."""
    root = _Parser(prog="model-selector", description=__doc__)
    sub = root.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _task_args(sub.add_parser("select", help="show the decision, call nothing"),
               prompt_required=False)
    run = sub.add_parser("run", help="select, call, fall back; print the answer")
    _task_args(run, prompt_required=True)
    run.add_argument("--mock-response", help="answer every call with this text (offline run)")
    run.add_argument("--timeout-s", type=cmd.seconds, default=30.0)
    run.add_argument("--policy", type=cmd.policy, default="spec",
                     help="how candidates are ordered: spec (default), learned, "
                          "learned-quality, cheapest, random, model:<id>")
    rate = sub.add_parser("rate", help="rate a served request's answer (0 to 1), for the "
                                       "learned policies")
    rate.add_argument("request_id", metavar="REQUEST_ID",
                      help="the request's id: `run` prints it (its --json: thread_id)")
    rate.add_argument("quality", metavar="QUALITY", type=cmd.quality,
                      help="how good the answer was, from 0 (useless) to 1 (right)")
    rate.add_argument("--comment", help="kept in the feedback log's rating record "
                                        "(redacted; at most 2,000 characters)")
    rate.add_argument("--json", action="store_true", help="print the rating record")
    reg = sub.add_parser("registry", help="validate, list or load the registry")
    reg_sub = reg.add_subparsers(dest="action", required=True, parser_class=_Parser)
    v = reg_sub.add_parser("validate", help="check a registry file and its policies")
    v.add_argument("path", nargs="?")
    ls = reg_sub.add_parser("list", help="list models")
    ls.add_argument("--domain", choices=DOMAINS)
    ls.add_argument("--json", action="store_true")
    reg_sub.add_parser("init", help="load the YAML statuses into Redis (the spec's --init)")
    health = sub.add_parser("health", help="health, circuit and cooldown of every model")
    health.add_argument("--probe", action="store_true",
                        help="probe health_check_url now (from here; the results are shared)")
    health.add_argument("--reset", nargs="+", metavar="MODEL_ID", default=[],
                        help="forget these models' circuit, cooldown, unusable mark and "
                             "cached health, for every replica")
    health.add_argument("--json", action="store_true")
    cmd.add_extra_commands(sub)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    args = parser().parse_args(argv)
    try:
        return int(cmd.dispatch(args) or 0)
    except cmd.UserError as exc:
        print(f"model-selector: error: {exc}", file=sys.stderr)
        return exc.status
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `| head` closed our stdout: stop quietly, as `cat` would
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's exit flush cannot fail
        return 141  # 128 + SIGPIPE, what a shell reports for a writer killed by the pipe


if __name__ == "__main__":
    sys.exit(main())
