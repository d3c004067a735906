"""Drawing many samples in chunks, so memory does not grow with N beyond the output itself."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from . import ops


@torch.no_grad()
def sample_chunked(
    model: Any, n: int, steps: int | None = None, chunk: int = 500, *, host: Any = None, out: Path | None = None,
    progress: bool = False,
) -> Tensor | None:
    """Draw ``n`` samples ``chunk`` at a time. With ``out`` (.npy) each chunk is written straight
    into a memory-mapped file and nothing is kept in memory; otherwise the samples are returned.
    ``progress``: a bar over the samples and, below it, one over each chunk's solver steps."""
    from .progress import bar, solver_bars

    shape = tuple(model.data.shape)
    mm = None
    parts: list[Tensor] = []
    done = 0
    samples = bar(n, f"sample {getattr(model, 'model_id', '')}".strip(), "sample") if progress else None
    while done < n:
        k = min(chunk, n - done)
        with solver_bars(progress):
            x = ops.sample(model, k, steps, host=host).detach().cpu()
        if samples is not None:
            samples.update(k)
        if out is not None:
            if mm is None:
                mm = np.lib.format.open_memmap(out, mode="w+", dtype=np.float32, shape=(n, *x.shape[1:]))
            mm[done : done + k] = x.numpy()
        else:
            parts.append(x)
        done += k
    if samples is not None:
        samples.close()
    if mm is not None:
        mm.flush()
        del mm
        return None
    return torch.cat(parts) if parts else torch.empty(0, *shape)
