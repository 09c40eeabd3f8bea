"""``predictor_runtime.codecs``: parse, b64, batching into arrays, strict JSON out."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from predictor_runtime import codecs
from predictor_runtime.errors import (
    InvalidInstanceError,
    InvalidOutputError,
    InvalidRequestError,
    PredictionFailedError,
)


class TestParse:
    def test_plain_json(self) -> None:
        assert codecs.parse_json(b'{"instances": [[1, 2]]}') == {"instances": [[1, 2]]}

    def test_nan_and_infinity_literals(self) -> None:
        out = codecs.parse_json(b'{"instances": [[NaN, Infinity, -Infinity, 1.5]]}')
        row = out["instances"][0]
        assert np.isnan(row[0]) and row[1] == float("inf") and row[2] == float("-inf")
        assert row[3] == 1.5

    def test_invalid_json_says_where(self) -> None:
        with pytest.raises(InvalidRequestError, match=r"Invalid JSON.*line 1 column 18"):
            codecs.parse_json(b'{"instances": [1,}')

    def test_non_utf8(self) -> None:
        with pytest.raises(InvalidRequestError, match="Invalid JSON"):
            codecs.parse_json(b"\xff\xfe{")


class TestSplitRequest:
    def test_kwargs_are_the_other_keys(self) -> None:
        instances, kwargs = codecs.split_request({"instances": [1], "signature_name": "s", "k": 2})
        assert instances == [1]
        assert kwargs == {"signature_name": "s", "k": 2}

    @pytest.mark.parametrize(
        ("payload", "message"),
        [
            ([1, 2], "expected an object"),
            ({"inputs": [1]}, 'missing "instances" attribute \\(keys found: inputs\\)'),
            ({"instances": {"a": 1}}, '"instances" must be a list, got dict'),
            ({"instances": []}, "must not be empty"),
        ],
    )
    def test_errors(self, payload: object, message: str) -> None:
        with pytest.raises(InvalidRequestError, match=message) as info:
            codecs.split_request(payload)
        assert info.value.status == 400


class TestDecodeB64:
    def test_any_depth(self) -> None:
        enc = base64.b64encode(b"\x00\x01hi").decode()
        instances = [{"image": {"b64": enc}, "tags": [{"b64": enc}, "x"]}, {"b64": enc}]
        out = codecs.decode_b64(instances)
        assert out == [{"image": b"\x00\x01hi", "tags": [b"\x00\x01hi", "x"]}, b"\x00\x01hi"]

    def test_objects_with_other_keys_are_kept(self) -> None:
        assert codecs.decode_b64([{"b64": "aGk=", "x": 1}]) == [{"b64": "aGk=", "x": 1}]

    def test_invalid_base64_names_instance(self) -> None:
        with pytest.raises(InvalidInstanceError, match="instance 1: invalid base64") as info:
            codecs.decode_b64([{"b64": "aGk="}, {"b64": "not base64!"}])
        assert info.value.index == 1

    def test_non_string_b64(self) -> None:
        with pytest.raises(InvalidInstanceError, match='instance 0: "b64" must hold a base64'):
            codecs.decode_b64([{"b64": 3}])

    def test_walk_skipped_without_b64_in_body(self) -> None:
        instances = [{"b64": "!!"}]  # would be invalid, but the body says no b64 key exists
        assert codecs.decode_b64(instances, b'{"instances": [[1]]}') is instances


class TestToArray:
    def test_numeric(self) -> None:
        arr = codecs.to_array([[1, 2.5], [3, None]], dtype=np.float32, n_features=2)
        assert arr.dtype == np.float32 and arr.shape == (2, 2)
        assert np.isnan(arr[1, 1])

    def test_single_feature_scalars(self) -> None:
        assert codecs.to_array([1, 2, 3], n_features=1).shape == (3, 1)

    def test_scalars_for_multi_feature_model(self) -> None:
        with pytest.raises(InvalidInstanceError, match="instance 0: expected a list of numbers"):
            codecs.to_array([1, 2], n_features=3)

    def test_ragged_names_instance(self) -> None:
        rows = [[1, 2, 3]] * 3 + [[1, 2]]
        with pytest.raises(InvalidInstanceError, match="instance 3: expected 3 .*got 2"):
            codecs.to_array(rows)

    def test_non_numeric_names_instance_and_feature(self) -> None:
        with pytest.raises(InvalidInstanceError, match="instance 2: feature 1: expected a number"):
            codecs.to_array([[1, 2], [3, 4], [5, "abc"]])

    def test_feature_count_mismatch(self) -> None:
        with pytest.raises(InvalidInstanceError, match="instance 0: expected 4 features, got 3"):
            codecs.to_array([[1, 2, 3]], n_features=4)

    def test_ragged_against_model_width(self) -> None:
        with pytest.raises(InvalidInstanceError, match="instance 1: expected 2 features, got 3"):
            codecs.to_array([[1, 2], [1, 2, 3]], n_features=2)

    def test_object_instance(self) -> None:
        with pytest.raises(InvalidInstanceError, match="instance 0: expected a list.*object"):
            codecs.to_array([{"a": 1}])

    def test_too_deep(self) -> None:
        with pytest.raises(InvalidInstanceError, match="flat list"):
            codecs.to_array([[[1, 2]], [[3, 4]]])


class TestRecordsToColumns:
    def test_columns(self) -> None:
        cols = codecs.records_to_columns([{"a": 1, "b": "x"}, {"b": "y", "a": 2}])
        assert cols == {"a": [1, 2], "b": ["x", "y"]}

    def test_missing_and_unexpected_keys(self) -> None:
        with pytest.raises(InvalidInstanceError) as info:
            codecs.records_to_columns([{"a": 1, "b": 2}, {"a": 1, "c": 3}])
        message = str(info.value)
        assert "instance 1" in message and "missing input(s) ['b']" in message
        assert "unexpected input(s) ['c']" in message

    def test_required_names(self) -> None:
        with pytest.raises(InvalidInstanceError, match="instance 0: missing input"):
            codecs.records_to_columns([{"a": 1}], required=["a", "b"])

    def test_non_object(self) -> None:
        with pytest.raises(InvalidInstanceError, match="instance 1: expected an object"):
            codecs.records_to_columns([{"a": 1}, [1]])


class TestSerialize:
    def test_numpy_and_non_finite(self) -> None:
        preds = [
            np.float32(1.5),
            np.int64(2),
            np.bool_(True),
            float("nan"),
            np.array([1.0, np.inf]),
        ]
        body = codecs.predictions_body(preds)
        assert json.loads(body) == {"predictions": [1.5, 2, True, None, [1.0, None]]}

    def test_strict_json(self) -> None:
        body = codecs.predictions_body(np.array([[np.nan, -np.inf]]))
        assert b"NaN" not in body and b"Infinity" not in body
        assert json.loads(body) == {"predictions": [[None, None]]}

    def test_bytes_become_b64(self) -> None:
        body = codecs.predictions_body([b"\x00\xff", np.bytes_(b"ab")])
        assert json.loads(body) == {"predictions": [{"b64": "AP8="}, {"b64": "YWI="}]}

    def test_string_and_object_arrays(self) -> None:
        body = codecs.predictions_body(np.array(["setosa", "virginica"]))
        assert json.loads(body) == {"predictions": ["setosa", "virginica"]}
        body = codecs.predictions_body(np.array([1, "a", None], dtype=object))
        assert json.loads(body) == {"predictions": [1, "a", None]}

    def test_non_contiguous_array(self) -> None:
        arr = np.arange(12.0).reshape(3, 4)[:, ::2]
        assert json.loads(codecs.predictions_body(arr)) == {"predictions": arr.tolist()}

    def test_dict_outputs_become_objects(self) -> None:
        body = codecs.predictions_body({"scores": np.array([[0.1], [0.2]]), "label": ["a", "b"]})
        assert json.loads(body) == {
            "predictions": [{"scores": [0.1], "label": "a"}, {"scores": [0.2], "label": "b"}]
        }

    def test_dict_outputs_of_different_lengths(self) -> None:
        with pytest.raises(InvalidOutputError, match="one entry per instance"):
            codecs.predictions_body({"a": [1, 2], "b": [1]})

    def test_unserializable(self) -> None:
        with pytest.raises(
            PredictionFailedError,
            match="instance 1 cannot be written as JSON.*serializable: object",
        ) as info:
            codecs.predictions_body([1, object()])
        assert info.value.status == 400

    def test_error_body(self) -> None:
        assert json.loads(codecs.error_body('bad "x"')) == {"error": 'bad "x"'}


class TestNanAsNull:
    def test_nan_rewritten_outside_strings_only(self) -> None:
        body = b'{"instances": [[NaN, 1.0]], "note": "NaN stays"}'
        out = codecs.parse_json(body, nan_as_null=True)
        assert out == {"instances": [[None, 1.0]], "note": "NaN stays"}

    def test_without_the_option_nan_is_a_float(self) -> None:
        out = codecs.parse_json(b'{"instances": [[NaN]]}')
        assert np.isnan(out["instances"][0][0])

    @pytest.mark.parametrize(
        "body",
        [b'{"instances": [[NaN, Infinity]]}', b'{"instances": [[NaN]], "s": "a\\"NaN"}'],
    )
    def test_unsafe_bodies_take_the_standard_parser(self, body: bytes) -> None:
        out = codecs.parse_json(body, nan_as_null=True)
        assert np.isnan(out["instances"][0][0])

    def test_invalid_json_still_reported(self) -> None:
        with pytest.raises(InvalidRequestError, match="Invalid JSON"):
            codecs.parse_json(b'{"instances": [NaN,]}', nan_as_null=True)
