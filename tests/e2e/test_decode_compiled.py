"""The compiled decoder's differential suite (tests/unit/test_decode_compiled.py) again, under sanitizers."""

from __future__ import annotations

import os

import pytest


def test_differential_suite_under_address_and_undefined_behaviour_sanitizers(tmp_path) -> None:
    """The compiled decoder parses untrusted network input: tests/unit/test_decode_compiled.py again, with the
    extension built
    with -fsanitize=address,undefined, so an out-of-bounds read or an overflow fails loudly instead of passing
    by luck. Runs in a subprocess (the sanitizer runtime must be preloaded into the interpreter)."""
    import subprocess
    import sys
    from pathlib import Path

    if os.environ.get("OTEL_ML_SANITIZED") == "1":
        pytest.skip("already running under the sanitizers")
    repo = Path(__file__).resolve().parents[2]
    runtimes = []
    for lib in ("libasan.so", "libubsan.so"):
        found = subprocess.run(["cc", f"-print-file-name={lib}"], capture_output=True, text=True).stdout.strip()
        if not os.path.isabs(found):
            if os.environ.get("CI") == "true":
                pytest.fail(f"the C compiler has no {lib}; CI must run the sanitizer build")
            pytest.skip(f"the C compiler has no {lib}")
        runtimes.append(found)
    tree = tmp_path / "tree"
    tree.mkdir()
    subprocess.run(f"git -C {repo} ls-files -z otel_ml tests bench | xargs -0 cp --parents -t {tree}", shell=True,
                   check=True, cwd=repo)
    import sysconfig

    so = tree / "otel_ml" / "decode" / f"_otlp_columns{sysconfig.get_config_var('EXT_SUFFIX')}"
    subprocess.run(["cc", "-O1", "-g", "-fno-omit-frame-pointer", "-fsanitize=address,undefined",
                    "-fno-sanitize-recover=all", "-std=c11", "-shared", "-fPIC",
                    f"-I{sysconfig.get_paths()['include']}", str(tree / "otel_ml/decode/_otlp_columns.c"),
                    "-o", str(so)], check=True)
    # PYTHONMALLOC=malloc: objects come from malloc, not from pymalloc arenas ASan cannot see into.
    env = {**os.environ, "LD_PRELOAD": " ".join(runtimes), "PYTHONMALLOC": "malloc", "PYTHONPATH": str(tree),
           "ASAN_OPTIONS": "detect_leaks=0:exitcode=86", "UBSAN_OPTIONS": "print_stacktrace=1",
           "OTEL_ML_SANITIZED": "1", "OTEL_ML_FUZZ_EXAMPLES": "1500"}
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x",
                          "tests/unit/test_decode_compiled.py", "-c", "/dev/null", "--rootdir", str(tree)],
                         cwd=tree, env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, (f"exit {run.returncode} (86: AddressSanitizer found an error)\n"
                                 + run.stdout[-3000:] + run.stderr[-3000:])
    assert "passed" in run.stdout and str(so) in subprocess.run(
        [sys.executable, "-c", "import otel_ml.decode._otlp_columns as m; print(m.__file__)"], cwd=tree, env=env,
        capture_output=True, text=True).stdout  # the sanitized build is the one that ran
