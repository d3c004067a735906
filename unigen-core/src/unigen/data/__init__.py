"""Datasets: tensors or lazily read arrays, batches and a resumable, shardable batch iterator.

Images are held as uint8 level indices {0..K-1}, shape (N, C, H, W), a quarter of float32, and
become floats in [-1, 1] per batch on the training device (:func:`from_levels`), with the number of
quantization levels K kept in ``info.levels`` so that bits/dim is computed on the discrete data.
Vectors (2-D toys, a user's ``.npy``) are float tensors, used as they are.

``Dataset.x`` may also be a *lazy array* (anything with ``shape``, ``dtype`` and ``__getitem__`` over
a LongTensor of indices that returns a tensor): a memory-mapped ``.npy`` or a folder of image files
decoded per batch (:mod:`unigen.data.folder`). ``stream=True`` keeps such data on the host and reads
only each batch's examples; a background thread reads the next batch while the model trains.

Where user data comes from (folders, arrays, CSV, Hugging Face, tensors) is :mod:`unigen.data.sources`.
"""

from .arrays import from_tensor, from_torch_dataset
from .base import Batch, BatchIterator, Dataset, as_floats, from_levels, to_levels

__all__ = ["Batch", "Dataset", "BatchIterator", "as_floats", "to_levels", "from_levels", "from_tensor",
           "from_torch_dataset"]
