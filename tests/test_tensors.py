"""TensorBatch, batch keys and the V2 codec without a server; the dispatcher's tensor path."""

from __future__ import annotations

import asyncio
import json
import struct
from typing import Any

import numpy as np
import pytest

from predictor_runtime.batching import merge_instances
from predictor_runtime.errors import InvalidOutputError, InvalidRequestError
from predictor_runtime.loader import LoadedModel
from predictor_runtime.pipeline import Pipeline
from predictor_runtime.tensors import TensorBatch, batch_key, datatype_of
from predictor_runtime.v2 import codec


def test_tensor_batch_len_slice_concat() -> None:
    a = TensorBatch({"x": np.arange(6).reshape(3, 2), "y": np.array([b"a", b"b", b"c"], object)})
    assert len(a) == 3
    part = a[1:]
    assert len(part) == 2 and part.arrays["x"].tolist() == [[2, 3], [4, 5]]
    both = TensorBatch.concat([a, part])
    assert len(both) == 5 and both.arrays["y"].tolist() == [b"a", b"b", b"c", b"b", b"c"]
    with pytest.raises(ValueError, match="first \\(batch\\) dimension"):
        TensorBatch({"x": np.zeros(2), "y": np.zeros(3)})
    with pytest.raises(ValueError, match="scalar"):
        TensorBatch({"x": np.float32(1)})
    with pytest.raises(ValueError, match="cannot concatenate"):
        TensorBatch.concat([a, TensorBatch({"x": np.zeros((1, 2))})])


def test_batch_keys_keep_kinds_apart() -> None:
    f32 = np.zeros((2, 3), np.float32)
    assert batch_key(f32) == batch_key(np.ones((5, 3), np.float32))
    assert batch_key(f32) != batch_key(np.zeros((2, 3), np.float64))
    assert batch_key(f32) != batch_key(np.zeros((2, 4), np.float32))
    assert batch_key([[1, 2, 3]]) == b""
    t = TensorBatch({"x": f32})
    assert batch_key(t) == batch_key(TensorBatch({"x": np.ones((9, 3), np.float32)}))
    assert batch_key(t) != batch_key(TensorBatch({"z": f32}))
    merged = merge_instances([t, TensorBatch({"x": np.ones((1, 3), np.float32)})])
    assert isinstance(merged, TensorBatch) and len(merged) == 3


def test_datatypes() -> None:
    assert datatype_of(np.float32) == "FP32"
    assert datatype_of(np.dtype("<U3")) == "BYTES"
    assert datatype_of(np.uint16) == "UINT16"
    with pytest.raises(InvalidOutputError):
        datatype_of(np.complex64)


def test_binary_numeric_input_is_a_view_of_the_body() -> None:
    x = np.arange(12, dtype="<f8").reshape(3, 4)
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "shape": [3, 4],
                    "datatype": "FP64",
                    "parameters": {"binary_data_size": 96},
                }
            ]
        }
    ).encode()
    body = head + x.tobytes()
    req = codec.parse_request(body, str(len(head)).encode())
    arr = req.inputs[0].array
    assert np.array_equal(arr, x)
    assert arr.base is not None and not arr.flags.owndata  # frombuffer: no copy
    assert np.shares_memory(arr, np.frombuffer(body, np.uint8))


def test_bytes_binary_round_trip() -> None:
    values = np.array([b"", b"\x00\xff", "ü".encode()], dtype=object)
    body, size = codec.encode_response("m", "v", "id1", [("s", values, True)])
    assert size is not None
    raw = body[size:]
    assert raw == b"".join(struct.pack("<I", len(v)) + v for v in values)
    head = json.loads(body[:size])
    assert head["outputs"][0] == {
        "name": "s",
        "datatype": "BYTES",
        "shape": [3],
        "parameters": {"binary_data_size": len(raw)},
    }


class TensorEcho:
    """``predict_tensors`` doubling ``x`` and summing it per row."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def predict(self, instances: Any, **kwargs: Any) -> Any:
        return instances

    def predict_tensors(self, inputs: dict[str, np.ndarray], **kwargs: Any) -> dict[str, Any]:
        x = inputs["x"]
        self.calls.append(len(x))
        return {"double": x * 2, "total": x.sum(axis=1)}


def test_pipeline_merges_tensor_batches_and_slices_outputs() -> None:
    pred = TensorEcho()
    pipe = Pipeline(LoadedModel.wrap(pred, "custom", "/x"), max_batch_size=64)
    batches = [TensorBatch({"x": np.full((i + 1, 2), i, dtype=np.int64)}) for i in range(8)]

    async def go() -> list[Any]:
        return await asyncio.gather(*(pipe.predict(b) for b in batches))

    outs = pipe.run(lambda _: go())
    for i, out in enumerate(outs):
        assert isinstance(out, TensorBatch) and len(out) == i + 1
        assert out.arrays["double"].tolist() == [[2 * i, 2 * i]] * (i + 1)
        assert out.arrays["total"].tolist() == [2 * i] * (i + 1)
    assert sum(pred.calls) == sum(range(1, 9)) and len(pred.calls) < 8  # merged


def test_pipeline_micro_batches_tensor_batches() -> None:
    pred = TensorEcho()
    pipe = Pipeline(LoadedModel.wrap(pred, "custom", "/x"), max_batch_size=4)
    out = pipe.run(lambda p: p.predict(TensorBatch({"x": np.arange(20).reshape(10, 2)})))
    assert pred.calls == [4, 4, 2]
    assert out.arrays["total"].tolist() == [1, 5, 9, 13, 17, 21, 25, 29, 33, 37]


def test_tensor_batch_without_predict_tensors_is_refused() -> None:
    class Plain:
        def predict(self, instances: Any, **kwargs: Any) -> Any:
            return instances

    pipe = Pipeline(LoadedModel.wrap(Plain(), "custom", "/x"))
    with pytest.raises(InvalidRequestError, match="no predict_tensors"):
        pipe.run(lambda p: p.predict(TensorBatch({"x": np.zeros((1, 1))})))


@pytest.mark.parametrize("datatype", ["FP16", "FP32", "FP64"])
def test_json_float_data_fast_path_matches_the_general_parse(datatype: str) -> None:
    pytest.importorskip("simdjson")
    x = np.random.default_rng(5).normal(size=(300, 7)).round(6)
    tensor = {"name": "x", "shape": [300, 7], "datatype": datatype}
    flat = json.dumps({"id": "a", "inputs": [{**tensor, "data": x.reshape(-1).tolist()}]})
    fast = codec._fast_payload(flat.encode())
    assert fast is not None and isinstance(fast["inputs"][0]["data"], np.ndarray)
    got = codec.parse_request(flat.encode())
    ref = codec._from_json("x", datatype, codec.numpy_dtype(datatype), (300, 7), 2100, x.tolist())
    assert got.id == "a" and got.inputs[0].array.dtype == codec.numpy_dtype(datatype)
    assert np.array_equal(got.inputs[0].array, ref)


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ([1.5] * 2000 + ["x"], "element 2000 is str 'x'"),
        ([1.5] * 2001, "needs 2000 values, data has 2001"),
    ],
)
def test_json_float_fast_path_keeps_the_errors(data: list[Any], needle: str) -> None:
    body = json.dumps(
        {"inputs": [{"name": "x", "shape": [2000], "datatype": "FP32", "data": data}]}
    )
    with pytest.raises(InvalidRequestError, match=needle):
        codec.parse_request(body.encode())


def test_json_nested_or_null_data_take_the_general_path() -> None:
    pytest.importorskip("simdjson")
    nested = [[1.0, None]] * 1000
    body = json.dumps(
        {"inputs": [{"name": "x", "shape": [1000, 2], "datatype": "FP64", "data": nested}]}
    )
    fast = codec._fast_payload(body.encode())
    assert fast is not None and isinstance(fast["inputs"][0]["data"], list)
    arr = codec.parse_request(body.encode()).inputs[0].array
    assert arr.shape == (1000, 2) and np.isnan(arr[:, 1]).all()
