"""A Hugging Face ``datasets`` dataset: a ``save_to_disk`` folder (``load_from_disk``) or a hub name
(``load_dataset``, when the machine can reach the hub). Needs the optional extra
``pip install 'unigen-core[hf]'``.

The examples are the first ``Image`` column (else a column named ``image`` or ``img``); labels are
the first ``ClassLabel`` column (else a column named ``label``), when there is one. A ``DatasetDict``
with ``train`` and ``test`` splits keeps its own split; otherwise the seeded 10% rule applies. Images
are converted, resized and cropped as in a folder (:mod:`unigen.data.folder`) and held as uint8.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import DataError
from ..model import DataInfo
from .base import Dataset
from .folder import GREY_MODES, to_array

IMAGE_COLUMNS = ("image", "img")
LABEL_COLUMNS = ("label", "labels")


def _open(name: str) -> Any:
    try:
        import datasets
    except ImportError:
        raise DataError("hf: data needs the Hugging Face datasets package: pip install 'unigen-core[hf]'") from None
    try:
        if Path(name).exists():
            return datasets.load_from_disk(name)
        return datasets.load_dataset(name)
    except FileNotFoundError as exc:
        raise DataError(f"hf:{name}: {str(exc).splitlines()[0]}") from None
    except Exception as exc:  # noqa: BLE001 - the datasets library raises many kinds; say which in one line
        raise DataError(f"hf:{name}: cannot load it ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None


def _column(features: Any, kind: str, names: tuple[str, ...]) -> str | None:
    typed = [k for k, f in features.items() if type(f).__name__ == kind]
    return typed[0] if typed else next((k for k in names if k in features), None)


def _pil(value: Any, where: str) -> Any:
    from PIL import Image

    if hasattr(value, "getbands"):
        return value
    if isinstance(value, dict) and (value.get("bytes") or value.get("path")):
        try:
            return Image.open(io.BytesIO(value["bytes"]) if value.get("bytes") else value["path"])
        except (OSError, SyntaxError, ValueError) as exc:
            raise DataError(f"{where}: cannot read an image: {exc}") from None
    raise DataError(f"{where}: the image column holds {type(value).__name__}, not images")


def _split(ds: Any, name: str, split: str, image_size: int | None, channels: int | None) -> Dataset:
    where = f"hf:{name}[{split}]"
    image_col = _column(ds.features, "Image", IMAGE_COLUMNS)
    if image_col is None:
        raise DataError(f"{where}: no image column (an Image feature, or a column named image/img); "
                        f"columns: {', '.join(ds.features)}")
    label_col = _column(ds.features, "ClassLabel", LABEL_COLUMNS)
    if len(ds) == 0:
        raise DataError(f"{where}: no examples")
    images = [_pil(v, where) for v in ds[image_col]]
    c = channels or (3 if any(im.mode not in GREY_MODES for im in images) else 1)
    arrays = [to_array(im, c, image_size) for im in images]
    if len({a.shape for a in arrays}) > 1:
        odd = next(i for i, a in enumerate(arrays) if a.shape != arrays[0].shape)
        raise DataError(f"{where}: images differ in size (example 0 is {arrays[0].shape[2]}x{arrays[0].shape[1]}, "
                        f"example {odd} is {arrays[odd].shape[2]}x{arrays[odd].shape[1]}); pass --image-size S")
    x = torch.from_numpy(np.stack(arrays))  # (N, C, H, W) uint8
    y = None if label_col is None else torch.as_tensor(ds[label_col], dtype=torch.long)
    feature = ds.features.get(label_col) if label_col else None
    num_classes = getattr(feature, "num_classes", None) or (None if y is None else int(y.max()) + 1)
    info = DataInfo(name=Path(name).name or name, shape=tuple(x.shape[1:]), kind="image", levels=256,
                    num_classes=num_classes)
    return Dataset(info=info, x=x, y=y)


def read_hf(name: str, image_size: int | None, channels: int | None) -> dict[str, Dataset]:
    data = _open(name)
    if hasattr(data, "features"):  # one Dataset
        return {"all": _split(data, name, "all", image_size, channels)}
    if "train" in data and "test" in data:
        return {s: _split(data[s], name, s, image_size, channels) for s in ("train", "test")}
    if len(data) == 1:
        (only,) = data.values()
        return {"all": _split(only, name, "all", image_size, channels)}
    raise DataError(f"hf:{name}: splits {', '.join(data)}; expected train and test, or a single split")
