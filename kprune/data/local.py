"""Local copies of datasets: MNIST-style IDX files and CIFAR-10/100 batches.

Looked up, in order, in ``$KPRUNE_DATA_DIR/<name>/`` (also ``<name>`` spelled with
``-``) and, for Fashion-MNIST, Debian's ``/usr/share/datasets/fashion-mnist`` (package
``dataset-fashion-mnist``). CIFAR files may sit directly in the folder or inside the
archives' own folder (``cifar-10-batches-py``, ``cifar-10-batches-bin``,
``cifar-100-python``, ``cifar-100-binary``). Only numpy is needed to read them.
"""

from __future__ import annotations

import functools
import gzip
import math
import os
import pickle
from pathlib import Path

import numpy as np

from kprune.data.catalog import KNOWN
from kprune.errors import DataError

DEBIAN_FASHION_MNIST = "/usr/share/datasets/fashion-mnist"
ENV_VAR = "KPRUNE_DATA_DIR"
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
CIFAR_LAYOUTS = {  # name -> [(subfolder, {split: files}, format)]
    "cifar10": [
        ("cifar-10-batches-py",
         {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}, "pickle"),
        ("cifar-10-batches-bin",
         {"train": [f"data_batch_{i}.bin" for i in range(1, 6)], "test": ["test_batch.bin"]},
         "bin"),
    ],
    "cifar100": [
        ("cifar-100-python", {"train": ["train"], "test": ["test"]}, "pickle"),
        ("cifar-100-binary", {"train": ["train.bin"], "test": ["test.bin"]}, "bin"),
    ],
}



def read_idx(path) -> np.ndarray:
    """Reads an IDX file (the MNIST format), plain or gzip-compressed (detected by content).

    Args:
        path: file path.

    Returns:
        A numpy array (native byte order) with the file's dtype and shape (e.g. ``(60000, 28, 28)``
        uint8 for images, ``(60000,)`` for labels).

    Example:
        >>> read_idx("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz").shape
        (10000,)
    """
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    dtypes = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in dtypes:
        raise DataError(f"{path} is not an IDX file (bad magic number {raw[:4].hex()!r}).")
    ndim = raw[3]
    dims = tuple(int(d) for d in np.frombuffer(raw, ">i4", count=ndim, offset=4))
    dtype = np.dtype(dtypes[raw[2]])
    expected = 4 + 4 * ndim + dtype.itemsize * math.prod(dims)
    if len(raw) != expected:
        raise DataError(f"{path} is truncated or corrupt: {len(raw)} bytes, expected {expected}.")
    array = np.frombuffer(raw, dtype, offset=4 + 4 * ndim).reshape(dims)
    return array.astype(dtype.newbyteorder("="))


def _find(folder: Path, base: str) -> Path | None:
    for candidate in (folder / base, folder / (base + ".gz")):
        if candidate.is_file():
            return candidate
    return None


def _local_dirs(name: str) -> list[Path]:
    dirs = []
    root = os.environ.get(ENV_VAR)
    if root:
        dirs += [Path(root) / name, Path(root) / name.replace("_", "-")]
    if name == "fashion_mnist":
        dirs.append(Path(DEBIAN_FASHION_MNIST))
    return dirs


def expected_files(name: str) -> str:
    """Human-readable list of the files a local copy of ``name`` consists of."""
    if name in ("mnist", "fashion_mnist"):
        return ", ".join(f + "[.gz]" for pair in IDX_FILES.values() for f in pair)
    if name in CIFAR_LAYOUTS:
        return " or ".join(f"{sub}/ ({', '.join(sum(files.values(), []))})"
                           for sub, files, _ in CIFAR_LAYOUTS[name])
    return ""


class _SafeUnpickler(pickle.Unpickler):
    """Unpickles CIFAR's python batches (dicts of lists and numpy arrays) and nothing else.

    A pickle may name any importable callable and run it while loading; this unpickler only
    resolves the numpy array constructors, so a tampered file fails instead of running code.
    """

    ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
               ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar"), ("_codecs", "encode")}

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        from kprune.errors import DataError
        raise DataError(f"refusing to unpickle `{module}.{name}` from a local dataset file: CIFAR batches hold "
                        "only dicts, lists and numpy arrays, so this file was not written by the dataset's "
                        "authors. Delete it or use the binary CIFAR files (cifar-10-batches-bin).")


@functools.lru_cache(maxsize=8)
def _read_cached(kind: str, paths: tuple, num_label_bytes: int = 1):
    if kind == "idx":
        return read_idx(paths[0]), read_idx(paths[1])
    images, labels = [], []
    for p in paths:
        if kind == "pickle":
            with open(p, "rb") as f:
                batch = _SafeUnpickler(f, encoding="bytes").load()
            data = np.asarray(batch[b"data"], np.uint8)
            lab = batch.get(b"labels", batch.get(b"fine_labels"))
        else:  # CIFAR binary: label byte(s) then 3072 pixel bytes per record
            rec = np.fromfile(p, np.uint8).reshape(-1, num_label_bytes + 3072)
            data, lab = rec[:, num_label_bytes:], rec[:, num_label_bytes - 1]
        images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        labels.append(np.asarray(lab, np.int64))
    return np.concatenate(images), np.concatenate(labels)


def local_arrays(name: str, split: str):
    """(images NHWC uint8, labels) of a local copy of ``split`` ("train"/"test"), or None."""
    for folder in _local_dirs(name):
        if not folder.is_dir():
            continue
        if name in ("mnist", "fashion_mnist"):
            found = [_find(folder, base) for base in IDX_FILES[split]]
            if all(found):
                images, labels = _read_cached("idx", tuple(str(p) for p in found))
                images = images[..., None]
                break
        elif name in CIFAR_LAYOUTS:
            for sub, files, fmt in CIFAR_LAYOUTS[name]:
                base = folder / sub if (folder / sub).is_dir() else folder
                paths = [base / f for f in files[split]]
                if all(p.is_file() for p in paths):
                    break
            else:
                continue
            images, labels = _read_cached(fmt, tuple(str(p) for p in paths),
                                          2 if name == "cifar100" else 1)
            break
    else:
        return None
    n_classes = KNOWN[name].num_classes
    if len(images) != len(labels) or labels.min() < 0 or labels.max() >= n_classes:
        raise DataError(
            f"The local copy of {name!r} in {folder} is inconsistent: {len(images)} images, "
            f"{len(labels)} labels in [{labels.min()}, {labels.max()}] (expected labels in "
            f"[0, {n_classes - 1}]). Replace the files ({expected_files(name)})."
        )
    return images, labels
