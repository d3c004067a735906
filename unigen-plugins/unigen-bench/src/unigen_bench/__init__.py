"""unigen-bench: the ``bench`` and ``speed`` commands and the ``throughput`` metric, as a plugin."""
