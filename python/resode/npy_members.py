"""The ``.npy`` members of a model file, read without pickle: each header checked against its
payload's length, a member's declared size against a limit before it is inflated."""

from __future__ import annotations

import io
import os
import zipfile

import numpy as np

__all__ = ["available_memory_bytes", "read_member", "read_npy"]


def read_npy(data: bytes, name: str) -> np.ndarray:
    """Parse one ``.npy`` member without pickle, checking its header against its length."""
    f = io.BytesIO(data)
    major, minor = np.lib.format.read_magic(f)
    if (major, minor) == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(f)
    elif (major, minor) == (2, 0):
        shape, _, dtype = np.lib.format.read_array_header_2_0(f)
    else:
        raise ValueError(f"array {name!r} has unsupported .npy version {major}.{minor}")
    if dtype.hasobject or dtype.kind not in "biuf":
        raise ValueError(f"array {name!r} has dtype {dtype}; only numeric arrays are allowed")
    count = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if len(data) - f.tell() != count * dtype.itemsize:
        raise ValueError(f"array {name!r} is truncated or has trailing data")
    f.seek(0)
    arr = np.lib.format.read_array(f, allow_pickle=False)
    if arr.shape != tuple(shape):
        raise ValueError(f"array {name!r} does not match its header")
    return np.array(arr, order="C", copy=True)


def read_member(zf: zipfile.ZipFile, member: str, limit: int) -> np.ndarray:
    """The array of ``member``, refused if its declared size exceeds ``limit`` bytes."""
    size = zf.getinfo(member).file_size
    if size > limit:
        raise ValueError(
            f"array {member[:-4]!r} declares {size} bytes, more than the {limit} its model can have"
        )
    return read_npy(zf.read(member), member[:-4])


def available_memory_bytes() -> float:
    """The memory the system has available now, in bytes (16 GiB where it cannot tell)."""
    try:
        return float(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return 8.0 * 2**31
