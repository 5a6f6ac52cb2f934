"""What every command group shares: time ranges, class columns, significance levels, and how a client learns
what became of what it sent."""

from __future__ import annotations

import argparse


def time_range(start: str | None, end: str | None) -> tuple[int | None, int | None]:
    """``--from``/``--to`` in ns (None where not given); a ValueError naming both when ``--from`` is later."""
    from otel_ml.read.archive import parse_time_ns

    lo = parse_time_ns(start, "--from") if start else None
    hi = parse_time_ns(end, "--to") if end else None
    if lo is not None and hi is not None and lo > hi:
        raise ValueError(f"--from {start} is later than --to {end}")
    return lo, hi


def outcome_options(parser: argparse.ArgumentParser) -> None:
    """How ``labels send`` and ``replay`` learn what the processor did with the labels they sent."""
    parser.add_argument("--api", metavar="URL", help="the processor's JSON API, read back after sending to say what "
                                                     "became of the labels (default: http://HOST:9465, HOST of "
                                                     "--endpoint)")
    parser.add_argument("--wait", type=float, default=30.0, metavar="SECONDS",
                        help="how long to wait for the processor to count them (default %(default)s; 0: do not ask)")


def class_columns(pairs: list[str] | None) -> dict[str, str]:
    """``--class-probability-column CLASS=COLUMN`` (repeated) as class → column."""
    out = {}
    for pair in pairs or []:
        cls, sep, col = pair.partition("=")
        if not sep or not cls or not col:
            raise ValueError(f"--class-probability-column wants CLASS=COLUMN, got {pair!r}")
        out[cls] = col
    return out


def level(text: str) -> float:
    """An argparse type: a significance level in (0, 1)."""
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"a significance level in (0, 1), got {text}")
    return value



def endpoint_option(parser: argparse.ArgumentParser) -> None:
    """``--endpoint``: an OTLP/gRPC receiver as ``HOST:PORT`` or as OTel's variables write it (``http://HOST:PORT``)."""
    from otel_ml.instrument.labels import grpc_target

    def target(text: str) -> str:
        try:
            return grpc_target(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e).removeprefix(f"--endpoint {text!r}: ")) from None

    parser.add_argument("--endpoint", type=target, default="127.0.0.1:4317", metavar="HOST:PORT",
                        help="OTLP/gRPC receiver, HOST:PORT or http://HOST:PORT (default %(default)s; not the "
                             "OTLP/HTTP 4318 or /metrics 9464 ports)")


def time_unit_option(parser: argparse.ArgumentParser) -> None:
    from otel_ml.instrument.times import UNIT_NAMES

    parser.add_argument("--time-unit", choices=list(UNIT_NAMES), metavar="UNIT",
                        help="what the numbers of a numeric time column count: " + ", ".join(
                            f"{k} ({v})" for k, v in UNIT_NAMES.items()) + " (default: from their magnitude, said)")


def capture_options(parser: argparse.ArgumentParser) -> None:
    """``--format``, ``--mapping`` and ``--max-record-bytes``: a platform's capture as the input."""
    from otel_ml.instrument.capture import MAX_RECORD_BYTES

    parser.add_argument("--mapping", metavar="FILE",
                        help="with a capture --format: JSON naming the payloads' columns and outputs "
                             '({"features": [...], "outputs": [...], "output_keys": {...}}; docs/capture.md)')
    parser.add_argument("--max-record-bytes", type=int, default=MAX_RECORD_BYTES, metavar="N",
                        help="with a capture --format: a longer record (line) is refused, not read (default "
                             "%(default)s)")


def print_notes(notes: list[str]) -> None:
    """What a command read but left out, and how it read times: on stderr, before its summary."""
    import sys

    for note in notes:
        print(f"otel-ml: {note}", file=sys.stderr)
