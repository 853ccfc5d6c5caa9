"""Pickles that cannot run code: a restricted unpickler for annotation, proposal and state files.

Unpickling an arbitrary file executes whatever its ``__reduce__`` entries name. The pickles this project
reads hold data only: the annotation / proposal pkls are lists, dicts, str, int, float (the original's
tools write nothing else), and the person-proposal pickles of ACAR-Net / SlowFast map keys to numpy
arrays. ``safe_load`` admits exactly those: builtin containers and scalars always, numpy arrays and
scalars only when the caller asks for them. Any other global in the file is a FormatError naming the
file and the global, raised before anything it names is imported or called.
"""
from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import BinaryIO

from common.errors import FormatError

# Builtin types a data pickle may name with GLOBAL / STACK_GLOBAL (older protocols pickle sets and
# frozensets through a reduce on the type; everything else has its own opcode).
# Protocols 0-2 spell the module ``__builtin__`` and rebuild bytes through ``_codecs.encode`` (harmless).
_BUILTIN_GLOBALS = frozenset({(module, name) for module in ("builtins", "__builtin__") for name in
                              ("set", "frozenset", "list", "dict", "tuple", "bytearray", "complex", "slice")}
                             | {("_codecs", "encode")})
# What numpy needs to rebuild arrays and scalars, under numpy 1.x and 2.x module names.
_NUMPY_GLOBALS = frozenset(
    {(module, name) for module in ("numpy.core.multiarray", "numpy._core.multiarray")
     for name in ("_reconstruct", "scalar")}
    | {(module, "_frombuffer") for module in ("numpy.core.numeric", "numpy._core.numeric")}
    | {("numpy", "ndarray"), ("numpy", "dtype")}
)


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, handle: BinaryIO, path: str | Path, allow_numpy: bool) -> None:
        super().__init__(handle)
        self._path = path
        self._allowed = _BUILTIN_GLOBALS | (_NUMPY_GLOBALS if allow_numpy else frozenset())

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in self._allowed:
            allowed = "lists, dicts, strings and numbers" + (" and numpy arrays" if self._allowed > _BUILTIN_GLOBALS else "")
            raise FormatError(self._path, f"the pickle refers to {module}.{name}, but only {allowed} are allowed here; "
                                          "it was not loaded, because unpickling it could run code")
        return super().find_class(module, name)


def safe_load(source: str | Path | bytes, allow_numpy: bool = False, path: str | Path | None = None) -> object:
    """Unpickle a data-only file without running code.

    Args:
        source: the pickle file's path, or its bytes.
        allow_numpy: also admit numpy arrays and scalars (proposal pickles); off for annotation pkls.
        path: the name to put in errors when ``source`` is bytes.

    Returns:
        The unpickled object.

    Raises:
        FileNotFoundError: the file does not exist.
        FormatError: the file names a global outside the allowed set, or is not a readable pickle
            (file named).
    """
    if isinstance(source, bytes):
        name = path if path is not None else "<bytes>"
        return _load(io.BytesIO(source), name, allow_numpy)
    source = Path(source)
    if not source.is_file():
        raise FileNotFoundError(f"pickle file not found: {source}")
    with open(source, "rb") as handle:
        return _load(handle, source, allow_numpy)


def _load(handle: BinaryIO, path: str | Path, allow_numpy: bool) -> object:
    try:
        return _RestrictedUnpickler(handle, path, allow_numpy).load()
    except FormatError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError, AttributeError,
            ImportError, MemoryError, UnicodeDecodeError) as error:
        raise FormatError(path, f"not a readable pickle ({type(error).__name__}: {error})") from None
