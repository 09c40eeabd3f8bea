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
# The --state-url tests start a throwaway PostgreSQL server (initdb + pg_ctl): install
# Debian's server package when its binaries are missing and we may (root with apt-get).
if ! command -v initdb >/dev/null && ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
        echo "installing PostgreSQL for the --state-url tests..." >&2
        export DEBIAN_FRONTEND=noninteractive
        { apt-get update -qq && apt-get install -y -qq --no-install-recommends postgresql >/dev/null; } \
            || echo "could not install PostgreSQL: its tests will be skipped" >&2
    else
        echo "PostgreSQL (initdb) not found: the --state-url tests will be skipped" >&2
    fi
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
