"""Where spans come in: OTLP receivers over gRPC (otlp_grpc.py, optionally in worker processes: workers.py) and
HTTP (otlp_http.py, on the processor's HTTP server). Import the receivers from their modules: a receiver worker
process imports this package and must not load the HTTP server."""
