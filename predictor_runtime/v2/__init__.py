"""Open Inference Protocol V2 (KServe V2, Triton HTTP/REST) with Triton's binary tensors.

- :mod:`.codec`: request bodies -> numpy tensors, output tensors -> response bodies (JSON
  and the binary tensor data extension);
- :mod:`.mapping`: how tensors reach a predictor through the one
  :class:`~predictor_runtime.pipeline.Pipeline`, and model metadata;
- the routes are :mod:`predictor_runtime.server.routes.v2`.

numpy and orjson only: no framework is imported here.
"""
