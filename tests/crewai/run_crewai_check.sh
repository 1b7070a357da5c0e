#!/usr/bin/env bash
# The CrewAI tool (graph/crewai_tool.py) in a venv of its own, beside CrewAI.
#
# CrewAI 1.15 pins openai<3, pydantic<2.13 and mcp<2. The main environment has newer ones,
# and langchain-litellm 0.11.2 asks for litellm[mcp], whose mcp extra needs mcp>=2.3. So:
# CrewAI first, then this project with CrewAI's pins as constraints; pip then settles on
# langchain-litellm 0.11.1 (plain litellm) and everything else as in the main venv.
#
#   bash tests/crewai/run_crewai_check.sh        # needs Redis on 127.0.0.1:6379 (db 15)
#   CREWAI_VENV=/somewhere PYTHON=python3.11 bash tests/crewai/run_crewai_check.sh
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
VENV=${CREWAI_VENV:-/tmp/crewai-venv}
PYTHON=${PYTHON:-python3}
export LITELLM_LOCAL_MODEL_COST_MAP=True PIP_DISABLE_PIP_VERSION_CHECK=1

start=$(date +%s)
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install -q "crewai>=1.15,<2"
"$VENV/bin/pip" freeze | grep -iE '^(crewai|crewai-core|openai|pydantic|pydantic-core|mcp)==' \
  > "$VENV/crewai-pins.txt"
"$VENV/bin/pip" install -q -c "$VENV/crewai-pins.txt" -e "$ROOT"
"$VENV/bin/pip" check
echo "install: $(( $(date +%s) - start )) s; $("$VENV/bin/pip" freeze \
  | grep -iE '^(crewai|openai|pydantic|mcp|litellm|langchain-litellm|langgraph)==' | tr '\n' ' ')"

cd "$ROOT"
"$VENV/bin/python" tests/crewai/check_tool.py
