"""Tell, without unpickling or importing XGBoost, whether a pickle holds an XGBoost model.

A pickle (and an uncompressed joblib file, which is a pickle stream with raw array bytes
further on) that holds an object starts by pushing the object's class: ``PROTO``, maybe
``FRAME``, the module and class names, then ``STACK_GLOBAL`` (protocol 4+) or one
``GLOBAL`` opcode (protocol 2-3). Reading the first few opcodes of the first kilobytes is
enough. Compressed joblib files, protocol 0/1 pickles and anything else answer None.
"""

from __future__ import annotations

from pathlib import Path

PICKLE_FILES: tuple[str, ...] = ("model.joblib", "model.pkl")

_HEAD_BYTES = 4096
_MAX_OPCODES = 16
_SKIP = frozenset({"PROTO", "FRAME", "MEMOIZE", "PUT", "BINPUT", "LONG_BINPUT"})
_STRINGS = frozenset(
    {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING"}
)


def top_level_class(path: str | Path) -> tuple[str, str] | None:
    """``(module, name)`` of the class of the pickled top-level object, or None if unknown.

    Never unpickles; reads at most a few kilobytes.
    """
    import io
    import pickletools

    try:
        with open(path, "rb") as fh:
            head = fh.read(_HEAD_BYTES)
    except OSError:
        return None
    if not head.startswith(b"\x80"):  # no PROTO opcode: compressed, protocol 0/1, not a pickle
        return None
    strings: list[str] = []
    try:
        for count, (op, arg, _pos) in enumerate(pickletools.genops(io.BytesIO(head))):
            if count >= _MAX_OPCODES:
                return None
            if op.name in _SKIP:
                continue
            if op.name in _STRINGS:
                strings.append(str(arg))
                continue
            if op.name == "GLOBAL":
                module, _, name = str(arg).partition(" ")
                return module, name
            if op.name == "STACK_GLOBAL" and len(strings) == 2:
                return strings[0], strings[1]
            return None  # e.g. EMPTY_DICT: the top-level object is a container
    except Exception:  # truncated head or bytes that are not opcodes
        return None
    return None


def is_xgboost_pickle(path: str | Path) -> bool:
    """Whether ``path`` is a pickle/joblib stream whose top-level object is from xgboost."""
    found = top_level_class(path)
    return found is not None and (found[0] == "xgboost" or found[0].startswith("xgboost."))


def claims_directory(model_dir: str) -> bool:
    """Whether ``model_dir`` has exactly one joblib/pickle file and it holds XGBoost."""
    present = [Path(model_dir, n) for n in PICKLE_FILES if Path(model_dir, n).is_file()]
    return len(present) == 1 and is_xgboost_pickle(present[0])
