"""A small prediction service instrumented with otel-ml: POST /predict with JSON features.

    OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4317 python examples/serving_app.py --port 8080
    curl -s -XPOST localhost:8080/predict -d '{"income": 52000, "region": "north", "age": 41}'
    curl -s -XPOST localhost:8080/predict_batch -d '{"income": [52000, 61000], "region": ["north", "east"]}'
    curl -s -XPOST localhost:8080/outcome -d '{"prediction_id": "<id from /predict>", "repaid": true}'

Everything otel-ml-specific is the ModelMonitor; the rest is the standard OTel SDK setup any app has
(OTLP exporter configured by the usual OTEL_EXPORTER_OTLP_* environment variables).
"""

from __future__ import annotations

import argparse
import json
import math
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from otel_ml.instrument import ModelMonitor

MODEL_NAME = "credit-risk"
MODEL_VERSION = "1"


def score(features: dict) -> tuple[str, float, float]:
    """The "model": a fixed logistic score of income and age → (decision, its confidence, P(approve))."""
    z = 0.00004 * (float(features.get("income", 45_000)) - 45_000) + 0.03 * (float(features.get("age", 40)) - 40)
    p = 1 / (1 + math.exp(-z))
    return ("approve" if p >= 0.5 else "deny"), max(p, 1 - p), p


def make_handler(monitor: ModelMonitor) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _reply(self, code: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            except json.JSONDecodeError as e:
                self._reply(400, {"error": str(e)})
                return
            if self.path == "/predict":
                # An id per prediction: the outcome, learned later (POST /outcome), names it.
                with monitor.predict(body, prediction_id=True) as p:
                    label, confidence, p_approve = score(body)
                    p.set_prediction(label, score=confidence, probability=p_approve)
                self._reply(200, {"prediction": label, "score": confidence, "prediction_id": p.prediction_id})
            elif self.path == "/predict_batch":
                n = len(next(iter(body.values()), []))
                rows = [{k: v[i] for k, v in body.items()} for i in range(n)]
                results = [score(r) for r in rows]
                ids = [uuid.uuid4().hex for _ in rows]
                monitor.record_batch(body, predictions=[r[0] for r in results], scores=[r[1] for r in results],
                                     prediction_ids=ids, probabilities=[r[2] for r in results])
                self._reply(200, {"predictions": [r[0] for r in results], "prediction_ids": ids})
            elif self.path == "/outcome":
                # Ground truth, whenever it is known (here: was the loan repaid, i.e. was "approve" right).
                monitor.record_ground_truth(str(body["prediction_id"]), "approve" if body["repaid"] else "deny")
                self._reply(200, {})
            else:
                self._reply(404, {"error": "POST /predict, /predict_batch or /outcome"})

        def log_message(self, *args: object) -> None:
            pass

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    provider = TracerProvider(resource=Resource.create({"service.name": "credit-risk-api"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))  # endpoint from OTEL_EXPORTER_OTLP_*
    trace.set_tracer_provider(provider)
    monitor = ModelMonitor(MODEL_NAME, MODEL_VERSION)
    server = ThreadingHTTPServer((args.host, args.port), make_handler(monitor))
    print(f"serving {MODEL_NAME} v{MODEL_VERSION} on http://{args.host}:{server.server_port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        provider.shutdown()


if __name__ == "__main__":
    main()
