"""Where labels meet predictions: the pending-prediction store (pending.py) and the join that turns matched
labels into performance windows (ground_truth.py). What the windows score is in otel_ml/analyze/performance.py."""
