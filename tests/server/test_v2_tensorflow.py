"""V2 with TensorFlow: named input tensors become the signature's named tensors.

A SavedModel with two named inputs and two named outputs (one of them strings) is served
by the real tensorflow plugin; Triton's client sends the inputs by name, binary and JSON.
Expected values come from calling the tf.function directly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

tritonclient_http = pytest.importorskip("tritonclient.http")
tf = pytest.importorskip("tensorflow")
from tritonclient.utils import InferenceServerException  # noqa: E402

from predictor_runtime.loader import load_model  # noqa: E402


class Scorer(tf.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = tf.constant([[1.0], [-2.0], [0.5]])

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, 3], tf.float32, name="features"),
            tf.TensorSpec([None], tf.int64, name="bucket"),
        ]
    )
    def serve(self, features: Any, bucket: Any) -> dict[str, Any]:
        score = tf.squeeze(tf.matmul(features, self.w), axis=1) + tf.cast(bucket, tf.float32)
        label = tf.where(score > 0, tf.constant("pos"), tf.constant("neg"))
        return {"score": score, "label": label}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from conftest import start_live_server

    path: Path = tmp_path_factory.mktemp("tfv2") / "scorer"
    module = Scorer()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    srv = start_live_server()
    v = srv.registry.add_version("scorer", "v1", deployment_uri=str(path))
    srv.registry.attach(v, load_model(path))
    client = tritonclient_http.InferenceServerClient(srv.url.removeprefix("http://"))
    try:
        yield client, module
    finally:
        client.close()
        srv.stop()


def test_metadata_from_the_signature(served: Any) -> None:
    client, _ = served
    meta = client.get_model_metadata("scorer")
    assert meta["platform"] == "tensorflow"
    assert sorted(meta["inputs"], key=lambda t: t["name"]) == [
        {"name": "bucket", "datatype": "INT64", "shape": [-1]},
        {"name": "features", "datatype": "FP32", "shape": [-1, 3]},
    ]
    assert sorted(meta["outputs"], key=lambda t: t["name"]) == [
        {"name": "label", "datatype": "BYTES", "shape": [-1]},
        {"name": "score", "datatype": "FP32", "shape": [-1]},
    ]


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_named_inputs_reach_the_signature(served: Any, binary: bool) -> None:
    client, module = served
    rng = np.random.default_rng(1)
    features = rng.normal(size=(9, 3)).astype(np.float32)
    bucket = rng.integers(-2, 3, size=9).astype(np.int64)
    a = tritonclient_http.InferInput("features", [9, 3], "FP32")
    a.set_data_from_numpy(features, binary_data=binary)
    b = tritonclient_http.InferInput("bucket", [9], "INT64")
    b.set_data_from_numpy(bucket, binary_data=binary)
    outputs = [
        tritonclient_http.InferRequestedOutput("score", binary_data=binary),
        tritonclient_http.InferRequestedOutput("label", binary_data=binary),
    ]
    result = client.infer("scorer", [b, a], outputs=outputs)  # order does not matter
    expected = module.serve(features=features, bucket=bucket)
    assert np.array_equal(result.as_numpy("score"), expected["score"].numpy())
    labels = [v if isinstance(v, bytes) else v.encode() for v in result.as_numpy("label")]
    assert labels == list(expected["label"].numpy())


def test_wrong_named_inputs_are_400(served: Any) -> None:
    client, _ = served
    a = tritonclient_http.InferInput("features", [2, 4], "FP32")
    a.set_data_from_numpy(np.zeros((2, 4), np.float32))
    b = tritonclient_http.InferInput("bucket", [2], "INT64")
    b.set_data_from_numpy(np.zeros(2, np.int64))
    with pytest.raises(InferenceServerException) as info:
        client.infer("scorer", [a, b])
    assert info.value.status() == "400"
    assert "input 'features': expected shape [-1, 3]" in info.value.message()
    c = tritonclient_http.InferInput("bucket", [2], "FP32")
    c.set_data_from_numpy(np.zeros(2, np.float32))
    a = tritonclient_http.InferInput("features", [2, 3], "FP32")
    a.set_data_from_numpy(np.zeros((2, 3), np.float32))
    with pytest.raises(InferenceServerException) as info:
        client.infer("scorer", [a, c])
    assert "input 'bucket': expected int64 values, got float32" in info.value.message()
    with pytest.raises(InferenceServerException) as info:
        client.infer("scorer", [a])
    assert "takes inputs ['bucket', 'features']; got ['features']" in info.value.message()
