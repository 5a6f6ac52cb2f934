"""Coverage-guided fuzz target: the compiled OTLP decoder against the pure-Python reference (atheris).

Not a test module (pytest does not collect it) and not run in CI: ``scripts/fuzz-decoder.sh`` builds the C
decoder with libFuzzer coverage and ASan+UBSan and runs this file; run it before changing ``otel_ml/decode/``.
Each input is decoded by both decoders under default and small limits and must give what the differential
suite (tests/unit/test_decode_compiled.py) demands: identical results, a decline, or a refusal by both. A
difference raises, a memory error aborts; libFuzzer then writes the input as ``crash-*`` to reproduce with
``scripts/fuzz-decoder.sh --reproduce FILE``.

``python tests/fuzz_decoder.py --write-seeds DIR`` writes the seed corpus (tests/fuzz-corpus/decoder/) from the
suite's own requests: SDK output, load-generator requests, wire-format corner cases, the repeated-column span.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["otel_ml.decode"]):
    from otel_ml.decode import DecodeLimits, otlp

from tests.unit import test_decode_compiled as suite

LIMITS = (DecodeLimits(), suite.LIMITS)


def one_input(data: bytes) -> None:
    for limits in LIMITS:
        suite.compare(data, limits)


def seeds() -> list[bytes]:
    from bench.loadgen import make_request

    out = [suite.sdk_request(rows=8), make_request(spans=4, seed=1), suite.REPEATED_BATCH_COLUMN]
    out += [suite.request_of(span) for _, span, _ in suite.CORNER_CASES]
    return out


def main() -> None:
    if sys.argv[1:2] == ["--write-seeds"]:
        target = Path(sys.argv[2])
        target.mkdir(parents=True, exist_ok=True)
        for data in seeds():
            (target / hashlib.sha1(data).hexdigest()[:16]).write_bytes(data)
        return
    if otlp._otlp_columns is None or not otlp.COMPILED:
        sys.exit("the compiled decoder is not loaded: run this through scripts/fuzz-decoder.sh")
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
