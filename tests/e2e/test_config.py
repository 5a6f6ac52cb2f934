"""Config through `otel-ml serve`: a bad setting stops the start naming its key."""

from __future__ import annotations


def test_serve_refuses_a_bad_setting_with_its_key() -> None:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "otel_ml.cli", "serve", "--window", "60", "--horizon", "90"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "windows.horizon_seconds: a whole number of windows" in out.stderr, out.stderr


def test_a_key_given_twice_in_the_config_is_refused_naming_both_lines(tmp_path) -> None:
    """A second `performance:` block silently replaced the first (issue 44)."""
    import subprocess
    import sys

    config = tmp_path / "otel-ml.yaml"
    config.write_text("performance:\n  horizon_seconds: 3600\nwindows:\n  window_seconds: 60\n"
                      "performance:\n  window_seconds: 600\n")
    out = subprocess.run([sys.executable, "-m", "otel_ml.cli", "serve", "--config", str(config)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "key 'performance' appears twice in one mapping, at lines 1 and 5" in out.stderr, \
        out.stderr


def test_every_busy_port_is_named_at_once(tmp_path) -> None:
    """Busy ports were reported one per restart (issue 44): all of them in one line, each with its setting."""
    import socket
    import subprocess
    import sys

    held = []
    for _ in range(2):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen()
        held.append(s)
    grpc_port, prom_port = (s.getsockname()[1] for s in held)
    try:
        out = subprocess.run([sys.executable, "-m", "otel_ml.cli", "serve", "--otlp-grpc-endpoint",
                              f"127.0.0.1:{grpc_port}", "--prometheus-endpoint", f"127.0.0.1:{prom_port}",
                              "--otlp-http-endpoint", "127.0.0.1:0", "--ui-endpoint", "127.0.0.1:0", "--state-dir",
                              str(tmp_path / "state")], capture_output=True, text=True, timeout=60)
    finally:
        for s in held:
            s.close()
    assert out.returncode == 2, out.stderr
    assert f"receiver.otlp_grpc.endpoint) on 127.0.0.1:{grpc_port}" in out.stderr, out.stderr
    assert f"export.prometheus.endpoint) on 127.0.0.1:{prom_port}" in out.stderr, out.stderr
