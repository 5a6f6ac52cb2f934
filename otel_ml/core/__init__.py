"""The processor's core: what happens to a request once a source has decoded it, and where the results live.

    Pipeline.submit(result)      pipeline.py   admit whole or refuse whole, make durable (the state backend),
                                               apply to the live models, count
    LiveModels                   live.py       window sets per (partition, model, version), references, lifecycle
    Evaluator → Snapshot         evaluator.py  every interval, one immutable Snapshot (snapshot.py) of drift,
                                               quality and performance, which the exporter and the pages read
    StateBackend                 backend.py    the interface the two state backends (otel_ml/state/) implement
    Counters, StorageHealth      counters.py, health.py: self-telemetry the stages share

The core imports no state backend, receiver or exporter: service.py wires them around it.
"""
