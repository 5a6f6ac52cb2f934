"""Config through `otel-ml serve`: a bad setting stops the start naming its key."""

from __future__ import annotations


def test_serve_refuses_a_bad_setting_with_its_key() -> None:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "otel_ml.cli", "serve", "--window", "60", "--horizon", "90"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "windows.horizon_seconds: a whole number of windows" in out.stderr, out.stderr
