"""The client's V2 binary tensor codec checked against tritonclient's own encoder and parser."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from predictor_runtime.client import _v2

tritonclient_http = pytest.importorskip("tritonclient.http")

ARRAYS = {
    "fp32": np.arange(12, dtype=np.float32).reshape(3, 4),
    "int64": np.array([[1, -2], [3, 2**40]], dtype=np.int64),
    "fp16": np.array([0.5, 1.5], dtype=np.float16),
    "uint8": np.array([[0, 255]], dtype=np.uint8),
    "flags": np.array([True, False, True]),
    "text": np.array([b"abc", b"", "h\u00e9llo".encode()], dtype=object),
}


def triton_request(arrays: dict[str, np.ndarray]) -> tuple[dict, bytes]:
    from tritonclient.http._utils import _get_inference_request

    inputs = []
    for name, array in arrays.items():
        dt = "BYTES" if array.dtype == object else _v2.datatype(array)
        inp = tritonclient_http.InferInput(name, list(array.shape), dt)
        inp.set_data_from_numpy(array, binary_data=True)
        inputs.append(inp)
    body, json_size = _get_inference_request(inputs, "", None, 0, False, False, 0, None, None)
    return orjson.loads(body[:json_size]), body[json_size:]


def test_request_matches_tritonclients_binary_encoding():
    body, n = _v2.encode_request(ARRAYS, ["out"], {"k": 1})
    ours = orjson.loads(body[:n])
    theirs, theirs_binary = triton_request(ARRAYS)
    assert ours["inputs"] == theirs["inputs"]
    assert body[n:] == theirs_binary
    assert ours["outputs"] == [{"name": "out", "parameters": {"binary_data": True}}]
    assert ours["parameters"] == {"k": 1, "binary_data_output": True}


def test_strings_are_bytes_tensors():
    body, n = _v2.encode_request({"s": np.array(["a", "bc"])}, None, {})
    header = orjson.loads(body[:n])
    assert header["inputs"][0]["datatype"] == "BYTES"
    assert body[n:] == b"\x01\x00\x00\x00a\x02\x00\x00\x00bc"


def test_unsupported_dtype_is_a_clear_error():
    with pytest.raises(TypeError, match="complex128 has no V2 datatype"):
        _v2.encode_request({"c": np.array([1j])}, None, {})


def test_response_decoding_agrees_with_tritonclient():
    from tritonclient.http import InferResult
    from tritonclient.utils import serialize_byte_tensor

    outputs, blobs = [], []
    for name, array in ARRAYS.items():
        if array.dtype == object:
            raw = serialize_byte_tensor(array).item()
            dt = "BYTES"
        else:
            raw = array.tobytes()
            dt = _v2.datatype(array)
        outputs.append({"name": name, "datatype": dt, "shape": list(array.shape),
                        "parameters": {"binary_data_size": len(raw)}})  # fmt: skip
        blobs.append(raw)
    outputs.append({"name": "json_out", "datatype": "FP64", "shape": [2, 1], "data": [1.5, 2.5]})
    header = orjson.dumps({"model_name": "m", "outputs": outputs})
    body = header + b"".join(blobs)

    ours = _v2.decode_response(body, str(len(header)))
    theirs = InferResult.from_response_body(body, header_length=len(header))
    for name, array in ARRAYS.items():
        assert ours[name].dtype == theirs.as_numpy(name).dtype
        np.testing.assert_array_equal(ours[name], theirs.as_numpy(name))
        np.testing.assert_array_equal(ours[name], array)
    np.testing.assert_array_equal(ours["json_out"], np.array([[1.5], [2.5]]))
    # an all-JSON answer (no binary part)
    plain = orjson.dumps(
        {"outputs": [{"name": "y", "datatype": "INT32", "shape": [3], "data": [1, 2, 3]}]}
    )
    y = _v2.decode_response(plain, None)["y"]
    assert y.dtype == np.int32 and y.tolist() == [1, 2, 3]
