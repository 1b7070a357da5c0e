#!/usr/bin/env bash
# The CrewAI tool (graph/crewai_tool.py) in a venv of its own, installed the way users do:
# `pip install 'model-selector[crewai]'` (here editable, from this checkout).
#
# CrewAI 1.15 pins openai<3, pydantic<2.13 and mcp<2; the main environment has newer ones.
# One joint resolve works: pip keeps CrewAI's pins and settles on langchain-litellm 0.11.1,
# because 0.11.2 asks for litellm[mcp], whose mcp extra needs mcp>=2.3.
#
#   bash tests/crewai_tool/run_crewai_check.sh        # needs Redis on 127.0.0.1:6379 (db 15)
#   CREWAI_VENV=/somewhere PYTHON=python3.11 bash tests/crewai_tool/run_crewai_check.sh
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
VENV=${CREWAI_VENV:-/tmp/crewai-venv}
PYTHON=${PYTHON:-python3}
export LITELLM_LOCAL_MODEL_COST_MAP=True PIP_DISABLE_PIP_VERSION_CHECK=1

start=$(date +%s)
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install -q -e "$ROOT[crewai]"
"$VENV/bin/pip" check
echo "install: $(( $(date +%s) - start )) s; $("$VENV/bin/pip" freeze \
  | grep -iE '^(crewai|openai|pydantic|mcp|litellm|langchain-litellm|langgraph)==' | tr '\n' ' ')"

cd "$ROOT"
"$VENV/bin/python" tests/crewai_tool/check_tool.py
