#!/usr/bin/env bash
# Install the core, the first-party plugins and the dev tools (editable), then lint and
# run every test. Used by the README's second Quick start command and by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
pip_args=(-e ".[dev]")
for plugin in plugins/*/; do
    [ -f "$plugin/pyproject.toml" ] && pip_args+=(-e "$plugin")
done
# TensorFlow itself is an extra of its plugin (users may have a GPU build); tests use the CPU one.
[ -f plugins/tensorflow/pyproject.toml ] && pip_args+=(-e "plugins/tensorflow[cpu]")
python -m pip install --quiet "${pip_args[@]}"
ruff check .
ruff format --check .
set +e
python -m pytest "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
    echo "no tests were collected: failing" >&2
    exit 1
fi
exit "$status"
