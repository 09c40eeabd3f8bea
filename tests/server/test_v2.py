"""Open Inference Protocol V2 against a real server: Triton's own client, and httpx for errors.

The models are real: a scikit-learn forest and an XGBoost booster trained into a temp dir
and loaded through their plugins; predictions must equal the framework's own.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

tritonclient_http = pytest.importorskip("tritonclient.http")
from tritonclient.utils import InferenceServerException  # noqa: E402

from predictor_runtime.loader import LoadedModel, load_model  # noqa: E402

N_FEATURES = 8


class Scaler:
    """A custom prediction class (AI Platform style): ``predict`` gets ``instances`` lists."""

    def __init__(self) -> None:
        self.seen: list[Any] = []

    def predict(self, instances: list[Any], factor: float = 1.0, **kwargs: Any) -> list[Any]:
        self.seen.append(instances)
        return [sum(row) * factor for row in instances]

    @classmethod
    def from_path(cls, model_dir: str) -> Scaler:
        return cls()


class Identity:
    """A custom class with ``predict_tensors``: echoes every input tensor as an output."""

    def predict(self, instances: list[Any], **kwargs: Any) -> list[Any]:
        return instances

    def predict_tensors(self, inputs: dict[str, np.ndarray], **kwargs: Any) -> dict[str, Any]:
        return {f"{name}_out": arr for name, arr in inputs.items()}

    @classmethod
    def from_path(cls, model_dir: str) -> Identity:
        return cls()


class RowSum:
    """A framework-style predictor (has ``model_files``): gets the 2-D array itself."""

    name = "rowsum"
    model_files = ()

    def __init__(self) -> None:
        self.calls: list[tuple[type, int]] = []

    def predict(self, instances: Any, **kwargs: Any) -> Any:
        self.calls.append((type(instances), len(instances)))
        time.sleep(0.01)
        return instances.sum(axis=1)

    def tensor_metadata(self) -> dict[str, Any]:
        return {
            "inputs": [{"name": "x", "datatype": "FP64", "shape": [-1, 3]}],
            "outputs": [{"name": "total", "datatype": "FP64", "shape": [-1]}],
        }


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    import joblib
    import xgboost
    from sklearn.ensemble import RandomForestClassifier

    root = tmp_path_factory.mktemp("v2models")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, N_FEATURES))
    y = (x[:, 0] + x[:, 1] > 0).astype(int)
    forest = RandomForestClassifier(n_estimators=20, max_depth=5, random_state=0).fit(x, y)
    (root / "forest").mkdir()
    joblib.dump(forest, root / "forest" / "model.joblib")
    booster = xgboost.train(
        {"objective": "binary:logistic", "max_depth": 3},
        xgboost.DMatrix(x, label=y),
        num_boost_round=10,
    )
    (root / "xgb").mkdir()
    booster.save_model(str(root / "xgb" / "model.json"))
    return {"root": root, "forest": forest, "booster": booster, "x": x}


@pytest.fixture(scope="module")
def server(models: dict[str, Any]) -> Any:
    from conftest import start_live_server

    srv = start_live_server(max_batch_size=4096)
    root: Path = models["root"]
    for name in ("forest", "xgb"):
        v = srv.registry.add_version(name, "v1", deployment_uri=str(root / name))
        srv.registry.attach(v, load_model(root / name))
    for name, pred in (("scaler", Scaler()), ("identity", Identity()), ("rowsum", RowSum())):
        v = srv.registry.add_version(name, "v1", deployment_uri="/nonexistent")
        srv.registry.attach(v, LoadedModel.wrap(pred, "custom", "/nonexistent"))
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def client(server: Any) -> Any:
    c = tritonclient_http.InferenceServerClient(server.url.removeprefix("http://"))
    try:
        yield c
    finally:
        c.close()


def infer(client: Any, model: str, arrays: dict[str, np.ndarray], *, binary: bool, **kw: Any):
    inputs = []
    for name, arr in arrays.items():
        dt = tritonclient_http.np_to_triton_dtype(arr.dtype)
        i = tritonclient_http.InferInput(name, list(arr.shape), dt)
        i.set_data_from_numpy(arr, binary_data=binary)
        inputs.append(i)
    return client.infer(model, inputs, **kw)


# -- health and metadata ----------------------------------------------------------------


def test_health_and_model_readiness(client: Any) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("forest")
    assert client.is_model_ready("forest", "v1")
    assert not client.is_model_ready("forest", "v9")
    assert not client.is_model_ready("nope")
    meta = client.get_server_metadata()
    assert meta["name"] == "predictor-runtime"
    assert "binary_tensor_data" in meta["extensions"]


def test_model_metadata_from_the_loaded_models(client: Any) -> None:
    forest = client.get_model_metadata("forest")
    assert forest["name"] == "forest"
    assert forest["versions"] == ["v1"]
    assert forest["platform"] == "sklearn"
    assert forest["inputs"] == [{"name": "input_0", "datatype": "FP64", "shape": [-1, N_FEATURES]}]
    assert forest["outputs"] == [{"name": "predict", "datatype": "INT64", "shape": [-1]}]
    xgb = client.get_model_metadata("xgb", "v1")
    assert xgb["platform"] == "xgboost"
    assert xgb["inputs"] == [{"name": "input_0", "datatype": "FP32", "shape": [-1, N_FEATURES]}]
    assert xgb["outputs"] == [{"name": "predict", "datatype": "FP32", "shape": [-1]}]
    custom = client.get_model_metadata("scaler")
    assert custom["inputs"] == [] and custom["outputs"] == []


# -- inference with tritonclient ----------------------------------------------------------


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["FP32", "FP64"])
@pytest.mark.parametrize("model", ["forest", "xgb"])
def test_infer_equals_the_frameworks_own_predictions(
    client: Any, models: dict[str, Any], model: str, dtype: Any, binary: bool
) -> None:
    arr = models["x"][:37].astype(dtype)
    out = tritonclient_http.InferRequestedOutput("predict", binary_data=binary)
    result = infer(
        client, model, {"input_0": arr}, binary=binary, outputs=[out], request_id="req-7"
    )
    got = result.as_numpy("predict")
    if model == "forest":
        expected = models["forest"].predict(arr)
    else:
        expected = models["booster"].inplace_predict(arr)
    assert got.dtype == expected.dtype
    assert np.array_equal(got, expected)
    response = result.get_response()
    assert response["id"] == "req-7"
    assert response["model_name"] == model and response["model_version"] == "v1"
    assert ("parameters" in response["outputs"][0]) is binary


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_compressed_requests(client: Any, models: dict, algorithm: str) -> None:
    arr = models["x"][:50].astype(np.float32)
    result = infer(
        client, "xgb", {"input_0": arr}, binary=True, request_compression_algorithm=algorithm
    )
    assert np.array_equal(result.as_numpy("predict"), models["booster"].inplace_predict(arr))


def test_compressed_body_over_the_limit_is_413(live_factory: Any) -> None:
    import gzip

    srv = live_factory(max_request_bytes=10_000)
    body = json.dumps({"inputs": [{"name": "t", "shape": [1], "datatype": "BYTES",
                                   "data": ["x" * 50_000]}]}).encode()  # fmt: skip
    r = httpx.post(
        srv.url + "/v2/models/echo/infer",
        content=gzip.compress(body),
        headers={"Content-Encoding": "gzip"},
    )
    assert r.status_code == 413 and "the limit is 10000 bytes" in r.json()["error"]
    r = httpx.post(
        srv.url + "/v2/models/echo/infer", content=b"junk", headers={"Content-Encoding": "gzip"}
    )
    assert r.status_code == 400 and "not valid gzip data" in r.json()["error"]


def test_no_requested_outputs_answers_binary_by_default(client: Any, models: dict) -> None:
    # tritonclient sends binary_data_output=true when no outputs are named
    arr = models["x"][:5].astype(np.float32)
    result = infer(client, "xgb", {"anything": arr}, binary=True, model_version="v1")
    assert result.get_response()["outputs"][0]["parameters"]["binary_data_size"] == 20
    assert np.array_equal(result.as_numpy("predict"), models["booster"].inplace_predict(arr))


def test_custom_predictor_gets_instances_and_parameters_as_kwargs(client: Any, server: Any) -> None:
    arr = np.arange(6, dtype=np.int32).reshape(2, 3)
    result = infer(client, "scaler", {"rows": arr}, binary=True, parameters={"factor": 2.0})
    assert result.as_numpy("output_0").tolist() == [6.0, 24.0]
    seen = server.registry.version("scaler").pipeline.predictor.seen[-1]
    assert seen == [[0, 1, 2], [3, 4, 5]] and isinstance(seen, list)


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_every_datatype_round_trips(client: Any, binary: bool) -> None:
    arrays = {
        "b": np.array([[True, False], [False, True]]),
        "i8": np.array([[-128, 127]], dtype=np.int8).repeat(2, 0),
        "i16": np.array([[-3, 4], [5, 6]], dtype=np.int16),
        "i32": np.array([[2**31 - 1, -(2**31)]] * 2, dtype=np.int32),
        "i64": np.array([[2**62, -5]] * 2, dtype=np.int64),
        "u8": np.array([[0, 255]] * 2, dtype=np.uint8),
        "u16": np.array([[0, 65535]] * 2, dtype=np.uint16),
        "u32": np.array([[0, 2**32 - 1]] * 2, dtype=np.uint32),
        "u64": np.array([[0, 2**63]] * 2, dtype=np.uint64),
        "f16": np.array([[0.5, -1.25]] * 2, dtype=np.float16),
        "f32": np.array([[0.1, 1e30]] * 2, dtype=np.float32),
        "f64": np.array([[0.1, -1e300]] * 2, dtype=np.float64),
        "s": np.array([[b"abc", "é".encode()], [b"", b"x\x00y"]], dtype=object),
    }
    outputs = [
        tritonclient_http.InferRequestedOutput(f"{n}_out", binary_data=binary) for n in arrays
    ]
    result = infer(client, "identity", arrays, binary=binary, outputs=outputs)
    for name, arr in arrays.items():
        got = result.as_numpy(f"{name}_out")
        assert got.shape == arr.shape, name
        if arr.dtype == object:
            # tritonclient gives bytes for binary outputs, text for JSON ones
            values = [v if isinstance(v, bytes) else v.encode() for v in got.reshape(-1)]
            assert values == list(arr.reshape(-1)), name
        else:
            assert got.dtype == arr.dtype, name
            assert np.array_equal(got, arr), name


def test_requested_outputs_select_and_order(client: Any) -> None:
    arrays = {"a": np.ones((2, 2), np.float32), "b": np.zeros((2,), np.int64)}
    outputs = [
        tritonclient_http.InferRequestedOutput("b_out", binary_data=False),
        tritonclient_http.InferRequestedOutput("a_out", binary_data=True),
    ]
    result = infer(client, "identity", arrays, binary=True, outputs=outputs)
    names = [o["name"] for o in result.get_response()["outputs"]]
    assert names == ["b_out", "a_out"]
    assert result.get_response()["outputs"][0]["data"] == [0, 0]


def test_unknown_requested_output_is_an_error(client: Any, models: dict) -> None:
    arr = models["x"][:2].astype(np.float32)
    out = tritonclient_http.InferRequestedOutput("proba")
    with pytest.raises(InferenceServerException) as info:
        infer(client, "xgb", {"input_0": arr}, binary=True, outputs=[out])
    assert info.value.status() == "400"
    assert "unknown output(s) ['proba']" in info.value.message()


def test_unknown_model_with_tritonclient(client: Any, models: dict) -> None:
    arr = models["x"][:2].astype(np.float32)
    with pytest.raises(InferenceServerException) as info:
        infer(client, "nope", {"input_0": arr}, binary=True)
    assert info.value.status() == "404"
    assert "nope" in info.value.message()


# -- batching -----------------------------------------------------------------------------


def _binary_body(name: str, arr: np.ndarray) -> tuple[bytes, dict[str, str]]:
    raw = arr.astype("<f8").tobytes()
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": name,
                    "shape": list(arr.shape),
                    "datatype": "FP64",
                    "parameters": {"binary_data_size": len(raw)},
                }
            ],
            "outputs": [{"name": "total", "parameters": {"binary_data": True}}],
        }
    ).encode()
    return header + raw, {"Inference-Header-Content-Length": str(len(header))}


def test_batcher_merges_concurrent_v2_requests(server: Any) -> None:
    rng = np.random.default_rng(3)
    arrays = [rng.normal(size=(int(rng.integers(1, 5)), 3)) for _ in range(60)]
    predictor: RowSum = server.registry.version("rowsum").pipeline.predictor
    predictor.calls.clear()

    async def go() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as c:
            reqs = []
            for i, arr in enumerate(arrays):
                body, headers = _binary_body("x", arr)
                if i % 2:  # JSON and binary requests are the same arrays: they merge too
                    tensor = {"name": "x", "shape": list(arr.shape), "datatype": "FP64"}
                    body = json.dumps({"inputs": [{**tensor, "data": arr.tolist()}]}).encode()
                    headers = {}
                reqs.append(c.post("/v2/models/rowsum/infer", content=body, headers=headers))
            return await asyncio.gather(*reqs)

    responses = asyncio.run(go())
    for i, (arr, r) in enumerate(zip(arrays, responses, strict=True)):
        assert r.status_code == 200, r.text
        if i % 2:
            got = np.asarray(r.json()["outputs"][0]["data"])
        else:
            n = int(r.headers["inference-header-content-length"])
            got = np.frombuffer(r.content[n:], dtype="<f8")
        assert np.allclose(got, arr.sum(axis=1)), i
    assert all(kind is np.ndarray for kind, _ in predictor.calls)
    assert sum(rows for _, rows in predictor.calls) == sum(len(a) for a in arrays)
    assert max(rows for _, rows in predictor.calls) > 4, predictor.calls  # merged


def test_batcher_merges_named_tensors_and_slices_dict_outputs(server: Any) -> None:
    async def go() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as c:
            reqs = [
                c.post(
                    "/v2/models/identity/infer",
                    json={
                        "inputs": [
                            {"name": "a", "shape": [2], "datatype": "INT32", "data": [i, -i]},
                            {"name": "b", "shape": [2, 1], "datatype": "FP32", "data": [i, i]},
                        ]
                    },
                )
                for i in range(40)
            ]
            return await asyncio.gather(*reqs)

    for i, r in enumerate(asyncio.run(go())):
        assert r.status_code == 200, r.text
        outs = {o["name"]: o for o in r.json()["outputs"]}
        assert outs["a_out"]["data"] == [i, -i] and outs["a_out"]["shape"] == [2]
        assert outs["b_out"]["data"] == [i, i] and outs["b_out"]["shape"] == [2, 1]


# -- error shapes (httpx) ---------------------------------------------------------------


def _tensor(**kw: Any) -> dict[str, Any]:
    return {"name": "input_0", "shape": [1, N_FEATURES], "datatype": "FP64", **kw}


@pytest.mark.parametrize(
    ("path", "needle"),
    [
        ("/v2/models/nope/infer", "Model not found: nope"),
        ("/v2/models/forest/versions/v9/infer", "Version not found: v9"),
    ],
)
def test_404_unknown_model_or_version(server: Any, path: str, needle: str) -> None:
    r = httpx.post(server.url + path, json={"inputs": [_tensor(data=[0.0] * N_FEATURES)]})
    assert r.status_code == 404
    assert needle in r.json()["error"]
    for get in (path.removesuffix("/infer"), path.replace("/infer", "/ready")):
        g = httpx.get(server.url + get)
        assert g.status_code == 404 and needle in g.json()["error"]


def test_unknown_v2_path_and_wrong_method_are_plain_errors(server: Any) -> None:
    r = httpx.get(server.url + "/v2/models/forest/explain")
    assert r.status_code == 404 and isinstance(r.json()["error"], str)
    r = httpx.get(server.url + "/v2/models/forest/infer")
    assert r.status_code == 405 and "use POST" in r.json()["error"]


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"{nope", "Invalid JSON"),
        (b"[]", '"inputs"'),
        (b'{"inputs": []}', '"inputs" must be a non-empty list'),
        (b'{"inputs": [{"shape": [1], "datatype": "FP32", "data": [1]}]}', '"name"'),
        (
            b'{"inputs": [{"name": "t", "shape": [1], "datatype": "FP128", "data": [1]}]}',
            "input 't': unsupported datatype str 'FP128'",
        ),
        (
            b'{"inputs": [{"name": "t", "shape": [2, -1], "datatype": "FP32", "data": [1]}]}',
            "input 't': shape must be a list of non-negative integers",
        ),
        (
            b'{"inputs": [{"name": "t", "shape": [2, 2], "datatype": "FP32", "data": [1, 2, 3]}]}',
            "input 't': shape [2, 2] needs 4 values, data has 3",
        ),
        (
            b'{"inputs": [{"name": "t", "shape": [2], "datatype": "FP32", "data": [1, "x"]}]}',
            "input 't': datatype FP32 needs numbers, element 1 is str 'x'",
        ),
        (
            b'{"inputs": [{"name": "t", "shape": [2], "datatype": "INT8", "data": [1, 1.5]}]}',
            "input 't': datatype INT8 needs integers, element 1 is float 1.5",
        ),
        (
            b'{"inputs": [{"name": "t", "shape": [1], "datatype": "UINT8", "data": [300]}]}',
            "input 't': values out of range for UINT8",
        ),
        (
            b'{"inputs": [{"name": "t", "shape": [2], "datatype": "FP32", "data": [[1], [2, 3]]}]}',
            "input 't': data is ragged",
        ),
        (
            b'{"inputs": [{"name": "t", "shape": [1], "datatype": "FP32"}]}',
            """input 't' has neither "data" nor binary_data_size""",
        ),
        (
            b'{"inputs": [{"name": "t", "shape": [1], "datatype": "FP32", "data": [1]}], "id": 5}',
            '"id" must be a string',
        ),
    ],
)
def test_400_bad_tensors_name_the_tensor(server: Any, body: bytes, needle: str) -> None:
    r = httpx.post(server.url + "/v2/models/identity/infer", content=body)
    assert r.status_code == 400, r.text
    assert needle in r.json()["error"]


def test_400_feature_count_names_the_input(server: Any) -> None:
    r = httpx.post(
        server.url + "/v2/models/forest/infer",
        json={"inputs": [_tensor(shape=[2, 3], data=[0.0] * 6)]},
    )
    assert r.status_code == 400
    assert r.json()["error"] == (
        f"input 'input_0': expected shape [-1, {N_FEATURES}] (-1: any size), got [2, 3]"
    )
    two = [_tensor(data=[0.0] * N_FEATURES), _tensor(name="other", data=[0.0] * N_FEATURES)]
    r = httpx.post(server.url + "/v2/models/forest/infer", json={"inputs": two})
    assert r.status_code == 400 and "takes one input tensor" in r.json()["error"]


@pytest.mark.parametrize(
    ("sizes", "raw", "length", "needle"),
    [
        ([8], b"\0" * 4, None, "binary_data_size is 8 bytes but only 4"),
        ([4], b"\0" * 4, None, "input 't': shape [2] of FP32 needs 8 bytes of binary data, got binary_data_size 4"),
        ([8], b"\0" * 12, None, "4 bytes of binary data after the JSON header that no input claims"),
        ([8], b"\0" * 8, 10**9, "Inference-Header-Content-Length must be an integer"),
    ],
)  # fmt: skip
def test_400_binary_size_mismatches(
    server: Any, sizes: list[int], raw: bytes, length: int | None, needle: str
) -> None:
    tensor = {"name": "t", "shape": [2], "datatype": "FP32"}
    header = {"inputs": [{**tensor, "parameters": {"binary_data_size": sizes[0]}}]}
    with httpx.Client(base_url=server.url) as c:
        head = json.dumps(header).encode()
        hdr = str(len(head) if length is None else length)
        r = c.post(
            "/v2/models/identity/infer",
            content=head + raw,
            headers={"Inference-Header-Content-Length": hdr},
        )
    assert r.status_code == 400, r.text
    assert needle in r.json()["error"]


def test_400_bad_bytes_elements(server: Any) -> None:
    tensor = {"name": "s", "shape": [2], "datatype": "BYTES"}
    raw = b"\x03\x00\x00\x00abc\x09\x00\x00\x00xy"
    head = json.dumps({"inputs": [{**tensor, "parameters": {"binary_data_size": len(raw)}}]})
    r = httpx.post(
        server.url + "/v2/models/identity/infer",
        content=head.encode() + raw,
        headers={"Inference-Header-Content-Length": str(len(head))},
    )
    assert r.status_code == 400
    assert r.json()["error"] == "input 's': BYTES element 1 says 9 bytes but only 2 are left"


def test_nested_and_flat_data_and_null_as_nan(server: Any) -> None:
    for data in ([[1, 2], [3, None]], [1, 2, 3, None]):
        r = httpx.post(
            server.url + "/v2/models/identity/infer",
            json={"id": "n", "inputs": [{"name": "t", "shape": [2, 2], "datatype": "FP32", "data": data}]},
        )  # fmt: skip
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["id"] == "n"
        assert out["outputs"] == [
            {"name": "t_out", "datatype": "FP32", "shape": [2, 2], "data": [1.0, 2.0, 3.0, None]}
        ]


def test_body_limit_applies_to_the_whole_v2_body(live_factory: Any) -> None:
    srv = live_factory(max_request_bytes=1000)
    raw = b"\0" * 4000
    tensor = {"name": "t", "shape": [1000], "datatype": "FP32"}
    head = json.dumps({"inputs": [{**tensor, "parameters": {"binary_data_size": 4000}}]})
    r = httpx.post(
        srv.url + "/v2/models/echo/infer",
        content=head.encode() + raw,
        headers={"Inference-Header-Content-Length": str(len(head))},
    )
    assert r.status_code == 413
    assert "the limit is 1000 bytes" in r.json()["error"]
