"""How a worker process of otel-ml ends when the processor does.

The processor starts worker processes (OTLP/gRPC receivers, decoders of Kafka and Kinesis batches, page drawing).
Stopped in order, it stops them; killed (``kill -9``, the OOM killer, a crashing supervisor's restart), it cannot,
and a spawned child lives on with parent 1, holding its memory (and the multiprocessing resource tracker with it)
until someone notices: with a processor restarted in a loop they pile up. Every such child calls
``exit_with_parent`` first: a daemon thread that ends it within ``poll_seconds`` of its parent's death, whatever
the signal, on every platform. (The kernel's PR_SET_PDEATHSIG fires when the *thread* that started the child
ends, which a process pool does not control.)

>>> import os
>>> exit_with_parent(poll_seconds=60) is None  # a thread now watches this process's parent
True
"""

from __future__ import annotations

import os
import threading
import time


def exit_with_parent(poll_seconds: float = 1.0) -> None:
    """End this process (``os._exit``: nothing of a dead parent's work is left to finish) once its parent is gone."""
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(poll_seconds)
            if os.getppid() != parent:
                os._exit(0)

    threading.Thread(target=watch, name="otel-ml-parent-watch", daemon=True).start()
