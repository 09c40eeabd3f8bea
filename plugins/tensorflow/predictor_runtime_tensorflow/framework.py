"""The ``tensorflow`` framework: a SavedModel served through one of its signatures.

Behaviour follows Google AI Platform's TensorFlow runtime:

- signature: the request's ``signature_name``; else the only signature; else
  ``serving_default``; else a 400 error listing the signatures;
- inputs: a single-input signature takes bare values or ``{"<input>": value}`` objects, a
  multi-input one takes objects keyed by input name; each input becomes one tensor of the
  signature's dtype with the instances stacked along the first dimension;
- outputs: one output -> bare values per instance; several -> one object per instance
  keyed by output name; string outputs whose name ends in ``_bytes`` come back as bytes
  (``{"b64": ...}`` in JSON), other string outputs as UTF-8 text.

TensorFlow is imported only by :meth:`TensorFlowFramework.from_path`, never at import time.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from predictor_runtime.codecs import records_to_columns
from predictor_runtime.errors import (
    InvalidInstanceError,
    InvalidOutputError,
    InvalidRequestError,
    ModelLoadError,
    PredictionFailedError,
    describe,
)
from predictor_runtime.lazy import lazy_numpy

if TYPE_CHECKING:
    import numpy as np
else:
    np = lazy_numpy(globals())

DEFAULT_SIGNATURE = "serving_default"
"""``tf.saved_model.DEFAULT_SERVING_SIGNATURE_DEF_KEY``."""

BYTES_SUFFIX = "_bytes"
"""String outputs whose name ends with this are returned as bytes (``{"b64": ...}``)."""

_KIND_TEXT = {  # kind -> (singular, plural)
    "float": ("number", "numbers"),
    "int": ("integer", "integers"),
    "bool": ("boolean", "booleans"),
    "string": ("string", "strings"),
}


def import_tensorflow() -> Any:
    """Import TensorFlow with its C++ INFO logs off (unless ``TF_CPP_MIN_LOG_LEVEL`` is set)."""
    if "tensorflow" not in sys.modules:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    try:
        import tensorflow as tf
    except ImportError as exc:
        msg = (
            "The tensorflow framework needs TensorFlow: install it with "
            "`pip install tensorflow` (or `pip install 'predictor-runtime-tensorflow[cpu]'` "
            f"for tensorflow-cpu). Import failed: {exc}"
        )
        raise ModelLoadError(msg) from exc
    return tf


@dataclass(frozen=True)
class InputSpec:
    """One named input of a signature, as the runtime needs it."""

    name: str
    dtype: Any  # tf.DType
    kind: str  # "float", "int", "bool" or "string"
    np_dtype: Any  # numpy dtype for numeric kinds; object for strings
    shape: tuple[int | None, ...] | None  # None: unknown rank

    @property
    def instance_shape(self) -> tuple[int | None, ...] | None:
        return None if self.shape is None else self.shape[1:]

    def expected(self) -> str:
        """Human description, e.g. ``float32 numbers of shape [3] per instance``."""
        one, many = _KIND_TEXT[self.kind]
        note = ' (text, or bytes as {"b64": ...})' if self.kind == "string" else ""
        dtype = "" if self.kind == "string" else f"{self.dtype.name} "
        inner = self.instance_shape
        if inner is None:
            return f"{dtype}{many}{note}"
        if not inner:
            return f"one {dtype}{one} per instance{note}"
        dims = ", ".join("?" if d is None else str(d) for d in inner)
        return f"{dtype}{many} of shape [{dims}] per instance{note}"


def _input_spec(name: str, spec: Any, tf: Any) -> InputSpec | str:
    """An :class:`InputSpec`, or a string saying why the input is unsupported."""
    if not isinstance(spec, tf.TensorSpec):
        return f"input {name!r} is a {type(spec).__name__}; only dense tensors are supported"
    dtype = spec.dtype
    if dtype == tf.string:
        kind, np_dtype = "string", np.dtype(object)
    elif dtype.is_bool:
        kind, np_dtype = "bool", np.dtype(bool)
    elif dtype.is_integer and not dtype.is_quantized:
        kind, np_dtype = "int", np.dtype(dtype.as_numpy_dtype)
    elif dtype.is_floating:
        kind, np_dtype = "float", np.dtype(dtype.as_numpy_dtype)
    else:
        return f"input {name!r} has dtype {dtype.name}, which JSON instances cannot hold"
    shape = None if spec.shape.rank is None else tuple(spec.shape.as_list())
    if shape == ():
        return f"input {name!r} is a scalar (shape []); a batch dimension is needed"
    return InputSpec(name, dtype, kind, np_dtype, shape)


def _leaves(value: Any) -> Iterator[Any]:
    if isinstance(value, list | tuple):
        for item in value:
            yield from _leaves(item)
    else:
        yield value


def _leaf_ok(kind: str, value: Any) -> bool:
    if kind == "string":
        return isinstance(value, str | bytes)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "int":
        return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    return isinstance(value, int | float)


def _shape_of(value: Any) -> tuple[int, ...] | None:
    """The nested-list shape of one instance's value, None when ragged."""
    try:
        return np.shape(value)
    except ValueError:
        return None


def _compatible(shape: tuple[int, ...], expected: tuple[int | None, ...]) -> bool:
    return len(shape) == len(expected) and all(
        e is None or e == s for s, e in zip(shape, expected, strict=True)
    )


def _fmt_shape(shape: tuple[int, ...] | None) -> str:
    if shape is None:
        return "ragged nested lists"
    return f"shape [{', '.join(str(d) for d in shape)}]"


class Signature:
    """One signature of a loaded SavedModel: its function, inputs and outputs, cached."""

    def __init__(self, key: str, fn: Any, tf: Any) -> None:
        self.key = key
        self.fn = fn
        self._convert = tf.convert_to_tensor
        self.problem: str | None = None
        args, kwargs = fn.structured_input_signature
        self.inputs: list[InputSpec] = []
        if args:
            self.problem = "it takes positional inputs; only named inputs are supported"
        for name, spec in (kwargs or {}).items():
            parsed = _input_spec(name, spec, tf)
            if isinstance(parsed, str):
                self.problem = self.problem or parsed
            else:
                self.inputs.append(parsed)
        if not self.inputs and self.problem is None:
            self.problem = "it has no inputs"
        self.input_names = [i.name for i in self.inputs]

    # -- inputs ---------------------------------------------------------------------------

    def columns(self, instances: Sequence[Any]) -> dict[str, list[Any]]:
        """Instances -> ``{input name: [value per instance]}`` (bare values or objects)."""
        if len(self.inputs) == 1:
            name = self.input_names[0]
            if not isinstance(instances[0], dict):
                for i, inst in enumerate(instances):
                    if isinstance(inst, dict):
                        raise InvalidInstanceError(
                            i,
                            f"expected a bare value for the single input {name!r} "
                            f"(as instance 0), got an object with keys {sorted(inst)[:8]}",
                        )
                return {name: list(instances)}
        return records_to_columns(instances, required=self.input_names)

    def _type_error(self, spec: InputSpec, values: Sequence[Any]) -> InvalidInstanceError | None:
        for i, value in enumerate(values):
            for leaf in _leaves(value):
                if not _leaf_ok(spec.kind, leaf):
                    return InvalidInstanceError(
                        i,
                        f"input {spec.name!r}: expected {spec.expected()}, got {describe(leaf)}",
                    )
        return None

    def _shape_error(self, spec: InputSpec, values: Sequence[Any]) -> InvalidInstanceError:
        inner = spec.instance_shape
        first = _shape_of(values[0])
        for i, value in enumerate(values):
            got = _shape_of(value)
            if got is None or (inner is not None and not _compatible(got, inner)):
                return InvalidInstanceError(
                    i, f"input {spec.name!r}: expected {spec.expected()}, got {_fmt_shape(got)}"
                )
            if got != first:
                return InvalidInstanceError(
                    i,
                    f"input {spec.name!r}: every instance must have the same shape; "
                    f"instance 0 has {_fmt_shape(first)}, this one {_fmt_shape(got)}",
                )
        return InvalidInstanceError(0, f"input {spec.name!r}: expected {spec.expected()}")

    def array(self, spec: InputSpec, values: Sequence[Any]) -> np.ndarray:
        """One input's values -> an array of the signature's dtype, checked against its shape."""
        if spec.kind == "string":
            arr = np.array(values, dtype=object)
        else:
            try:
                arr = np.asarray(values)
            except (ValueError, TypeError, OverflowError):
                raise self._type_error(spec, values) or self._shape_error(spec, values) from None
            kind = arr.dtype.kind
            ok = (
                kind == "b"
                if spec.kind == "bool"
                else kind in "biu" or (kind == "f" and spec.kind == "float")
            )
            if not ok and spec.kind == "int" and kind == "f":
                ok = bool(np.all(np.isfinite(arr)) and np.all(arr == np.trunc(arr)))
            if not ok:
                raise self._type_error(spec, values) or self._shape_error(spec, values)
            if spec.kind == "int" and arr.size:
                info = np.iinfo(spec.np_dtype)
                low, high = arr.min(), arr.max()
                if low < info.min or high > info.max:
                    bad = next(
                        i
                        for i, v in enumerate(values)
                        if any(x < info.min or x > info.max for x in _leaves(v))
                    )
                    raise InvalidInstanceError(
                        bad,
                        f"input {spec.name!r}: value out of range for {spec.dtype.name} "
                        f"[{info.min}, {info.max}]",
                    )
            arr = arr.astype(spec.np_dtype, copy=False)
        shape = spec.shape
        if shape is not None and not _compatible(arr.shape, (len(values), *shape[1:])):
            raise self._shape_error(spec, values)
        if shape is not None and shape[0] is not None and shape[0] != len(values):
            msg = (
                f"Signature {self.key!r} input {spec.name!r} has a fixed batch size of "
                f"{shape[0]}; the request has {len(values)} instances"
            )
            raise InvalidRequestError(msg)
        if spec.kind == "string":
            error = self._type_error(spec, values)
            if error is not None:
                raise error
        return arr

    def feed(self, instances: Sequence[Any]) -> dict[str, Any]:
        """Instances -> ``{input name: tensor}`` ready for the signature function."""
        if self.problem is not None:
            raise InvalidRequestError(f"Signature {self.key!r} cannot be served: {self.problem}")
        columns = self.columns(instances)
        return {
            spec.name: self._convert(self.array(spec, columns[spec.name]), dtype=spec.dtype)
            for spec in self.inputs
        }

    def tensor_feed(self, inputs: dict[str, np.ndarray]) -> dict[str, Any]:
        """Named arrays (V2 tensors) -> ``{input name: tensor}``, checked against the
        signature's names, dtypes and shapes. A single tensor feeds a single-input
        signature whatever its name."""
        if self.problem is not None:
            raise InvalidRequestError(f"Signature {self.key!r} cannot be served: {self.problem}")
        if len(self.inputs) == 1 and len(inputs) == 1:
            arrays = {self.input_names[0]: next(iter(inputs.values()))}
        else:
            arrays = inputs
            if set(arrays) != set(self.input_names):
                raise InvalidRequestError(
                    f"Signature {self.key!r} takes inputs {sorted(self.input_names)}; "
                    f"got {sorted(arrays)}"
                )
        feed = {}
        for spec in self.inputs:
            arr = arrays[spec.name]
            kind = arr.dtype.kind
            ok = {
                "string": kind in "OSU",
                "bool": kind == "b",
                "int": kind in "iu",
                "float": kind in "iuf",
            }[spec.kind]
            if not ok:
                raise InvalidRequestError(
                    f"input {spec.name!r}: expected {spec.dtype.name} values, got {arr.dtype}"
                )
            expected = spec.shape
            if expected is not None and not _compatible(arr.shape, expected):
                dims = ", ".join("-1" if d is None else str(d) for d in expected)
                raise InvalidRequestError(
                    f"input {spec.name!r}: expected shape [{dims}], got {list(arr.shape)}"
                )
            if spec.kind != "string":
                arr = arr.astype(spec.np_dtype, copy=False)
            feed[spec.name] = self._convert(arr, dtype=spec.dtype)
        return feed

    def metadata(self) -> dict[str, Any]:
        """V2 tensor metadata of this signature (names, datatypes, shapes; -1 unknown)."""
        from predictor_runtime.tensors import datatype_of

        def entry(name: str, spec: Any) -> dict[str, Any]:
            dtype = spec.dtype
            datatype = "BYTES" if dtype.name == "string" else datatype_of(dtype.as_numpy_dtype)
            dims = spec.shape
            if hasattr(dims, "rank"):  # a TensorShape (outputs); inputs keep a tuple or None
                dims = None if dims.rank is None else tuple(dims.as_list())
            shape = [-1] if dims is None else [-1 if d is None else d for d in dims]
            return {"name": name, "datatype": datatype, "shape": shape}

        inputs = [entry(i.name, i) for i in self.inputs]
        outs = getattr(self.fn, "structured_outputs", None)
        if not isinstance(outs, dict):
            outs = {"output_0": outs} if outs is not None else {}
        outputs = [entry(k, v) for k, v in outs.items() if hasattr(v, "dtype")]
        return {"inputs": inputs, "outputs": outputs}

    # -- outputs --------------------------------------------------------------------------

    def results(self, outputs: Any, n: int) -> Any:
        """The signature's output tensors -> per-instance predictions (see module doc)."""
        if not isinstance(outputs, dict):
            outputs = {"output_0": outputs}
        converted: dict[str, Any] = {}
        for name, tensor in outputs.items():
            arr = tensor.numpy() if hasattr(tensor, "numpy") else np.asarray(tensor)
            if arr.ndim == 0 or arr.shape[0] != n:
                raise InvalidOutputError(
                    f"output {name!r} of signature {self.key!r} has shape {list(arr.shape)}; "
                    f"expected one entry per instance ({n}) along the first dimension"
                )
            if arr.dtype == object:
                converted[name] = _strings(arr, name)
            else:
                converted[name] = arr
        if len(converted) == 1:
            return next(iter(converted.values()))
        return converted


def _map_nested(value: Any, fn: Any) -> Any:
    if isinstance(value, list):
        return [_map_nested(v, fn) for v in value]
    return fn(value)


def _strings(arr: np.ndarray, name: str) -> list[Any]:
    """A string output: bytes for ``*_bytes`` outputs, UTF-8 text otherwise."""
    values = arr.tolist()
    if name.endswith(BYTES_SUFFIX):
        return values
    try:
        return _map_nested(values, lambda b: b.decode("utf-8") if isinstance(b, bytes) else b)
    except UnicodeDecodeError as exc:
        msg = (
            f"output {name!r} holds bytes that are not UTF-8 text ({exc}); name the output "
            f"with a {BYTES_SUFFIX!r} suffix to return them base64-encoded"
        )
        raise PredictionFailedError(msg) from None


_NOISE_LINE = re.compile(
    r"^\s*(File \"|Detected at node|<stack traces unavailable>|\[\[|Graph execution error:|$)"
)
_NODE = re.compile(r"Detected at node (\S+)")


def graph_error_message(exc: BaseException) -> str:
    """``Type: message (node N)`` for a TensorFlow error, without the stack TF appends."""
    text = getattr(exc, "message", None) or str(exc)
    kept = [ln.strip() for ln in text.splitlines() if not _NOISE_LINE.match(ln)]
    message = re.sub(r"\s*\[Op:[^\]]*\]$", "", " ".join(kept)) or text.strip()
    node = _NODE.search(text)
    if node:
        message += f" (node {node.group(1)})"
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


class TensorFlowFramework:
    """A TensorFlow SavedModel (``saved_model.pb``) served through its signatures.

    ``predict(instances, signature_name=...)`` picks the signature (see the module
    docstring); every other request key is ignored.
    """

    name = "tensorflow"
    api_name = "TENSORFLOW"
    model_files: tuple[str, ...] = ("saved_model.pb", "saved_model.pbtxt")
    decode_b64 = True
    batching = True

    def __init__(self, loaded: Any, signatures: dict[str, Signature]) -> None:
        self._loaded = loaded  # keeps the variables the signature functions capture alive
        self.signatures = signatures
        keys = list(signatures)
        if len(keys) == 1:
            self.default_signature: str | None = keys[0]
        elif DEFAULT_SIGNATURE in signatures:
            self.default_signature = DEFAULT_SIGNATURE
        else:
            self.default_signature = None

    @classmethod
    def from_path(cls, model_dir: str) -> TensorFlowFramework:
        """Load the SavedModel in ``model_dir`` (the ``serve`` MetaGraph when there are several)."""
        tf = import_tensorflow()
        try:
            loaded = tf.saved_model.load(model_dir)
        except ValueError as exc:
            if "tags" not in str(exc):
                raise
            loaded = tf.saved_model.load(model_dir, tags=["serve"])
        raw = dict(getattr(loaded, "signatures", {}) or {})
        if not raw:
            msg = (
                f"Failed to load model: the SavedModel in {model_dir} has no signatures; export "
                "it with tf.saved_model.save(obj, dir, signatures=...) or keras model.export(dir)"
            )
            raise ModelLoadError(msg)
        signatures = {key: Signature(key, fn, tf) for key, fn in sorted(raw.items())}
        return cls(loaded, signatures)

    def signature(self, name: Any = None) -> Signature:
        """The signature a request asks for (``signature_name``), or the default one."""
        available = ", ".join(repr(k) for k in self.signatures)
        if name is None:
            if self.default_signature is None:
                msg = (
                    f"The model has several signatures and none is {DEFAULT_SIGNATURE!r}: "
                    f'{available}. Name one with "signature_name" in the request '
                    "(CLI: --signature-name)"
                )
                raise InvalidRequestError(msg)
            return self.signatures[self.default_signature]
        if not isinstance(name, str):
            raise InvalidRequestError(f'"signature_name" must be a string, got {describe(name)}')
        try:
            return self.signatures[name]
        except KeyError:
            msg = (
                f"No signature found for signature key {name!r}. Available signatures: {available}"
            )
            raise InvalidRequestError(msg) from None

    def tensor_metadata(self) -> dict[str, Any]:
        """V2 model metadata: the default signature's inputs and outputs."""
        key = self.default_signature or next(iter(self.signatures))
        return self.signatures[key].metadata()

    def predict_tensors(self, inputs: dict[str, np.ndarray], **kwargs: Any) -> dict[str, Any]:
        """Run the chosen signature on named tensors (V2); returns ``{output: array}``."""
        sig = self.signature(kwargs.get("signature_name"))
        feed = sig.tensor_feed(inputs)
        n = len(next(iter(inputs.values())))
        try:
            outputs = sig.fn(**feed)
        except Exception as exc:
            detail = f"Exception during running the graph: {graph_error_message(exc)}"
            raise PredictionFailedError(detail) from exc
        if not isinstance(outputs, dict):
            outputs = {"output_0": outputs}
        result = {}
        for name, tensor in outputs.items():
            arr = tensor.numpy() if hasattr(tensor, "numpy") else np.asarray(tensor)
            if arr.ndim == 0 or arr.shape[0] != n:
                raise InvalidOutputError(
                    f"output {name!r} of signature {sig.key!r} has shape {list(arr.shape)}; "
                    f"expected one entry per instance ({n}) along the first dimension"
                )
            result[name] = arr
        return result

    def predict(self, instances: Sequence[Any], **kwargs: Any) -> Any:
        """Run the chosen signature on ``instances``; other request keys are ignored."""
        sig = self.signature(kwargs.get("signature_name"))
        feed = sig.feed(instances)
        try:
            outputs = sig.fn(**feed)
        except Exception as exc:
            detail = f"Exception during running the graph: {graph_error_message(exc)}"
            raise PredictionFailedError(detail) from exc
        return sig.results(outputs, len(instances))
