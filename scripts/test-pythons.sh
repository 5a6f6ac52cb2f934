#!/usr/bin/env bash
# The unit suite on the oldest and the newest Python that pyproject.toml promises (requires-python >= 3.10; 3.13 is
# the newest tested), each in a venv of its own (.venv-3.10, .venv-3.13) set up like .venv (scripts/setup.sh):
# what breaks on one version only (datetime.fromisoformat before 3.11, asyncio.timeout, a library's last release
# for an old Python) shows here. Interpreters come from pyenv (this machine has 3.10-3.13) or python3.X on PATH;
# one that is missing is skipped with a message, except under CI=true, where it fails.
set -euo pipefail
cd "$(dirname "$0")/.."
for version in 3.10 3.13; do
    python=""
    if command -v pyenv >/dev/null 2>&1; then
        found=$(ls -d "$(pyenv root)/versions/$version".* 2>/dev/null | sort -V | tail -n 1 || true)
        [ -n "$found" ] && [ -x "$found/bin/python" ] && python="$found/bin/python"
    fi
    [ -z "$python" ] && command -v "python$version" >/dev/null 2>&1 && python=$(command -v "python$version")
    if [ -z "$python" ]; then
        if [ "${CI:-}" = true ]; then
            echo "test-pythons: no Python $version (pyenv or python$version on PATH)" >&2
            exit 1
        fi
        echo "test-pythons: no Python $version found; its unit run is skipped" >&2
        continue
    fi
    venv=".venv-$version"
    [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
    stamp="$venv/.otel-ml-installed-$(cat pyproject.toml setup.py otel_ml/*/*.c | sha256sum | cut -c1-16)"
    if [ ! -f "$stamp" ]; then
        echo "installing otel-ml and its test tools for Python $version into $venv (a few minutes the first time)"
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e ".[test]"
        rm -f "$venv"/.otel-ml-installed-*
        touch "$stamp"
    fi
    echo "unit tests on Python $("$venv/bin/python" -c 'import platform; print(platform.python_version())')"
    "$venv/bin/python" -m pytest -q -p no:cacheprovider tests/unit
done
