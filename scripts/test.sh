#!/usr/bin/env bash
# Install the core, the first-party plugins and the dev tools (editable), then lint and
# run every test. Used by the README's second Quick start command and by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
pip_args=(-e ".[dev,ray,postgres]")
for plugin in plugins/*/; do
    [ -f "$plugin/pyproject.toml" ] && pip_args+=(-e "$plugin")
done
# TensorFlow itself is an extra of its plugin (users may have a GPU build); tests use the CPU one.
[ -f plugins/tensorflow/pyproject.toml ] && pip_args+=(-e "plugins/tensorflow[cpu]")
echo "installing predictor-runtime, its plugins and the test tools (a few minutes on a new machine)..." >&2
# one line per package collected, so a long install shows progress; pip's status decides
if ! python -m pip install --progress-bar off "${pip_args[@]}" 2>&1 \
    | (grep --line-buffered -E "^(Collecting|Successfully|ERROR|error)" || true); then
    echo "installation failed" >&2
    exit 1
fi
ruff check .
ruff format --check .
mypy predictor_runtime
set +e
python -m pytest "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
    echo "no tests were collected: failing" >&2
    exit 1
fi
exit "$status"
