"""Where state is kept, in one of two backends chosen at start (otel_ml/core/backend.py is their interface):

    local.py       LocalState: a journal of applied requests, checkpoints and the archive of past windows in the
                   state directory (journal.py, checkpoint.py, archive.py); recovery after a crash
    shared.py      SharedState: replicas in one Kafka consumer group share models; each partition's state is
                   published to a compacted changelog topic (changelog.py, partitions.py), taken over on a rebalance

control.py holds the requests an operator queues through the state directory (``otel-ml models retire``).
"""
