"""``python -m predictor_runtime``: argument parsing and error reporting only.

Failures print one line on stderr (``error: ...``) and exit non-zero; ``--debug`` shows
the traceback instead.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO

from .errors import InvalidRequestError, PredictorRuntimeError
from .server import defaults as d
from .statedir import DEFAULT_STATE_DIR, STATE_DIR_ENV

# the connection defaults, without importing the server (uvicorn) for `predict`
DEFAULT_TIMEOUT_KEEP_ALIVE = 75.0
DEFAULT_TIMEOUT_HEADERS = 10.0
DEFAULT_TIMEOUT_BODY = 60.0


class CliError(PredictorRuntimeError):
    """A bad command line or input file (exit status 2 for usage, 1 otherwise)."""


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line on stderr."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def _open_input(name: str) -> TextIO:
    if name == "-":
        return sys.stdin
    path = Path(name)
    if not path.is_file():
        raise CliError(f"Input file {name!r} does not exist")
    return path.open(encoding="utf-8-sig")


def read_instances(name: str, *, as_text: bool) -> list[Any]:
    """Instances from a file (``-``: stdin), one per line, like ``gcloud ... local predict``.

    ``as_text``: each line is one string instance; otherwise each line is one JSON value
    (the ``NaN``/``Infinity`` literals are accepted).
    """
    from .codecs import parse_json

    instances: list[Any] = []
    with _open_input(name) as fh:
        for lineno, raw in enumerate(fh, start=1):
            line = raw.rstrip("\r\n")
            if lineno == 1:
                line = line.lstrip("\ufeff")
            if not line.strip():
                raise CliError(
                    f"{name}: line {lineno}: empty lines are not allowed in the instances file"
                )
            if as_text:
                instances.append(line)
                continue
            try:
                instances.append(parse_json(line))
            except InvalidRequestError as exc:
                detail = str(exc).removeprefix("Invalid JSON in request body: ")
                raise CliError(f"{name}: line {lineno}: invalid JSON: {detail}") from None
    if not instances:
        raise CliError(f"{name}: no valid instance was found in the input file")
    return instances


def read_request(name: str) -> bytes:
    """A whole request body (``{"instances": [...], ...}``) from a file or stdin."""
    try:
        with _open_input(name) as fh:
            return fh.read().lstrip("\ufeff").encode("utf-8")
    except UnicodeDecodeError as exc:
        raise CliError(f"{name}: not UTF-8 text (byte {exc.start})") from None


def _add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model-dir", help="local directory with the model files")
    p.add_argument("--framework", help="framework name (see `plugins`); detected when omitted")
    p.add_argument("--prediction-class", help="custom predictor as module.Class or module:Class")
    p.add_argument(
        "--package",
        action="append",
        default=[],
        metavar="PATH",
        help="code for --prediction-class: a directory, a .py file, a wheel or an sdist (repeatable)",
    )
    p.add_argument(
        "--decode-b64",
        choices=("auto", "always", "never"),
        default="auto",
        help='decode {"b64": ...} objects to bytes (auto: for tensorflow and custom predictors)',
    )
    p.add_argument(
        "--max-batch-size",
        type=int,
        default=None,
        help="most instances per model call; larger requests are split (default 4096)",
    )
    p.add_argument(
        "--state-dir",
        help=f"state directory: package cache, server state (default: ${STATE_DIR_ENV}, "
        f"else ./{DEFAULT_STATE_DIR})",
    )


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("predictor-runtime")
    except PackageNotFoundError:
        return "unknown (not installed)"


class _VersionAction(argparse.Action):
    """``--version``, looked up only when asked for (the metadata scan costs start-up)."""

    def __call__(self, parser: argparse.ArgumentParser, *_args: Any, **_kwargs: Any) -> None:
        sys.stdout.write(f"predictor-runtime {_package_version()}\n")  # stdout, as argparse's
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every sub-command."""
    parser = _Parser(
        prog="python -m predictor_runtime",
        description="Run custom prediction routines and framework models locally.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument(
        "--version", action=_VersionAction, nargs=0, help="show the version and exit"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "predict", help="predict from a file of instances (like gcloud local predict)"
    )
    _add_model_options(p)
    remote = p.add_argument_group("remote prediction (instead of --model-dir)")
    remote.add_argument("--url", help="send the request to a running server at this URL")
    remote.add_argument("--model", help="with --url: the served model's name")
    remote.add_argument("--version", help="with --url: a version (default: the model's default)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--json-instances", metavar="FILE", help="one JSON instance per line; - for stdin"
    )
    src.add_argument(
        "--json-request", metavar="FILE", help='a {"instances": [...]} body; - for stdin'
    )
    src.add_argument(
        "--text-instances", metavar="FILE", help="one string instance per line; - for stdin"
    )
    p.add_argument("--signature-name", help="TensorFlow signature (passed as signature_name)")
    p.add_argument(
        "--stream",
        action="store_true",
        help="call predict_stream and print each chunk as one JSON line, as produced",
    )
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("serve", help="serve models over HTTP (AI Platform compatible API)")
    _add_model_options(p)
    p.add_argument(
        "--model-name",
        default=d.DEFAULT_MODEL_NAME,
        help="model name to serve it as (default: %(default)s)",
    )
    p.add_argument(
        "--version-name",
        default=d.DEFAULT_VERSION_NAME,
        help="version name to serve it as (default: %(default)s)",
    )
    p.add_argument(
        "--signature-name", help="TensorFlow signature for requests that name none (predict's)"
    )
    p.add_argument(
        "--host", default=d.DEFAULT_HOST, help="address to listen on (default %(default)s)"
    )
    p.add_argument(
        "--port",
        type=int,
        default=d.DEFAULT_PORT,
        help="TCP port; 0 picks a free one (default %(default)s)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=d.DEFAULT_WORKERS,
        help="worker processes sharing the port (default %(default)s)",
    )
    p.add_argument(
        "--max-batch-delay-ms",
        type=float,
        default=d.DEFAULT_MAX_BATCH_DELAY_MS,
        help="extra wait for more rows before a model call (default 0: batch what is queued)",
    )
    p.add_argument(
        "--max-request-bytes",
        type=int,
        default=d.DEFAULT_MAX_REQUEST_BYTES,
        help="larger request bodies are answered 413 (default %(default)s bytes: 1.5 MiB)",
    )
    p.add_argument(
        "--graceful-timeout",
        type=float,
        default=d.DEFAULT_GRACEFUL_TIMEOUT,
        help="seconds to let in-flight requests finish on SIGTERM/SIGINT (default %(default)s)",
    )
    p.add_argument("--access-log", action="store_true", help="log every request (costs throughput)")
    p.add_argument(
        "--example",
        choices=("iris", "generative"),
        default=None,
        help="serve a bundled example model (default without --model-dir: iris)",
    )
    sec = p.add_argument_group("security and limits")
    sec.add_argument(
        "--api-key",
        default=None,
        help="require this key (Bearer or basic auth) on every route but /healthz and /readyz "
        "(default: $PREDICTOR_RUNTIME_API_KEY)",
    )
    sec.add_argument(
        "--allow-paths",
        default=None,
        metavar="DIR[,DIR...]",
        help="confine model, package, task and job paths named by callers to these folders",
    )
    sec.add_argument(
        "--cors-origins",
        default=None,
        metavar="ORIGIN[,ORIGIN...]",
        help="browser origins allowed to call the API (default: none but the server's own)",
    )
    sec.add_argument("--no-fetch-urls", action="store_true", help="refuse http(s):// task urls")
    sec.add_argument(
        "--limit-concurrency",
        type=int,
        default=None,
        metavar="N",
        help="answer 503 beyond N open connections or requests in progress per worker "
        "(default: what the open-files limit allows, at most 4096)",
    )
    sec.add_argument(
        "--timeout-keep-alive",
        type=float,
        default=DEFAULT_TIMEOUT_KEEP_ALIVE,
        metavar="SECONDS",
        help="close idle keep-alive connections after this (default 75)",
    )
    sec.add_argument(
        "--timeout-headers",
        type=float,
        default=DEFAULT_TIMEOUT_HEADERS,
        metavar="SECONDS",
        help="close connections whose request headers take longer (default 10)",
    )
    sec.add_argument(
        "--timeout-body",
        type=float,
        default=DEFAULT_TIMEOUT_BODY,
        metavar="SECONDS",
        help="close connections whose request body takes longer (default 60)",
    )
    tasks = p.add_argument_group("async tasks")
    tasks.add_argument(
        "--task-ttl",
        type=float,
        default=d.DEFAULT_TASK_TTL,
        metavar="SECONDS",
        help="keep finished async tasks this long (default %(default)s)",
    )
    tasks.add_argument(
        "--max-pending-tasks",
        type=int,
        default=d.DEFAULT_MAX_PENDING_TASKS,
        help="answer 429 beyond this many pending async tasks (default %(default)s)",
    )
    tasks.add_argument(
        "--task-lease",
        type=float,
        default=d.DEFAULT_TASK_LEASE,
        metavar="SECONDS",
        help="a claimed task is claimed again if its process is silent this long "
        "(default %(default)s)",
    )
    scale = p.add_argument_group("state and scale-out")
    scale.add_argument(
        "--state-url",
        default=None,
        help="postgresql://user@host/db to share state between servers "
        "(default: $PREDICTOR_RUNTIME_STATE_URL, else SQLite under --state-dir)",
    )
    scale.add_argument(
        "--ray-address",
        default=None,
        help="deploy on Ray Serve: auto, local, or a cluster address",
    )
    p.set_defaults(func=cmd_serve)

    from .jobs.cli import add_parser as add_batch_predict

    add_batch_predict(sub)

    p = sub.add_parser("plugins", help="list installed frameworks and the plugins providing them")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_plugins)
    return parser


def _load(args: argparse.Namespace) -> Any:
    from .dispatcher import DEFAULT_MAX_BATCH_SIZE
    from .loader import load_model
    from .pipeline import Pipeline

    model = load_model(
        args.model_dir,
        framework=args.framework,
        prediction_class=args.prediction_class,
        packages=args.package,
        state_dir=args.state_dir,
    )
    size = args.max_batch_size or DEFAULT_MAX_BATCH_SIZE
    if size < 1:
        raise CliError(f"--max-batch-size must be at least 1, got {size}")
    return Pipeline(model, max_batch_size=size, decode_b64=args.decode_b64)


def cmd_predict(args: argparse.Namespace) -> int:
    """``predict``: load, predict once, print the response JSON on stdout."""
    from . import codecs

    if (args.url is None) == (args.model_dir is None):
        raise CliError("predict needs exactly one of --model-dir (local) or --url (a server)")
    if args.url is not None:
        return _predict_remote(args)
    if args.json_request:
        body = read_request(args.json_request)
    else:
        source = args.json_instances or args.text_instances
        instances = read_instances(source, as_text=bool(args.text_instances))
        body = b""
    pipeline = _load(args)
    if body:
        try:
            instances, kwargs = pipeline.dispatcher.parse(body)
        except InvalidRequestError as exc:
            raise CliError(f"{args.json_request}: {exc}") from None
    else:
        kwargs = {}
        if pipeline.dispatcher.decode:
            instances = codecs.decode_b64(instances)
    if args.signature_name:
        kwargs["signature_name"] = args.signature_name
    if args.stream:
        return _print_stream(pipeline, instances, kwargs)
    out = pipeline.run(lambda p: p.predict(instances, kwargs))
    sys.stdout.write(codecs.predictions_body(out).decode("utf-8") + "\n")
    return 0


def _predict_remote(args: argparse.Namespace) -> int:
    """``predict --url``: the same input files, sent through :class:`client.Client`.

    With ``--stream`` (where the command has it) the chunks of the server's streaming
    task are printed one JSON line each, as they arrive.
    """
    import json

    from . import codecs
    from .client import ApiError, Client, ClientError

    if not args.model:
        raise CliError("--url needs --model (the served model's name)")
    stream = bool(getattr(args, "stream", False))
    payload: Any = None
    if args.json_request:
        body = read_request(args.json_request)
        if args.signature_name or stream:
            payload = codecs.parse_json(body)
        if payload is not None and not isinstance(payload, dict):
            raise CliError(f"{args.json_request}: the request must be a JSON object")
    else:
        source = args.json_instances or args.text_instances
        payload = {"instances": read_instances(source, as_text=bool(args.text_instances))}
    if args.signature_name:
        payload["signature_name"] = args.signature_name
    if payload is not None:
        body = json.dumps(payload).encode()  # the standard library keeps NaN literals
    try:
        with Client(args.url) as client:
            if stream:
                instances = payload.pop("instances", None)
                with client.stream(args.model, instances, version=args.version, **payload) as it:
                    for chunk in it:
                        sys.stdout.write(codecs.dumps(chunk).decode("utf-8") + "\n")
                        sys.stdout.flush()
                return 0
            answer = client.predict_body(args.model, body, version=args.version)
    except ApiError as exc:
        raise CliError(f"{args.url}: {exc.message} (HTTP {exc.status})") from None
    except (ClientError, ValueError, TypeError) as exc:
        raise CliError(str(exc)) from None
    sys.stdout.write(codecs.dumps(answer).decode("utf-8") + "\n")
    return 0


def _print_stream(pipeline: Any, instances: list[Any], kwargs: dict[str, Any]) -> int:
    """``predict --stream``: one JSON line per ``predict_stream`` chunk, flushed at once."""
    from . import codecs

    async def consume(p: Any) -> None:
        async for chunk in p.stream(instances, kwargs):
            sys.stdout.write(codecs.dumps(chunk).decode("utf-8") + "\n")
            sys.stdout.flush()

    pipeline.run(consume)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """``serve``: load the model (or the bundled example), then serve until a signal."""
    import os

    from .dispatcher import DEFAULT_MAX_BATCH_SIZE
    from .server.context import ServerOptionsView
    from .server.main import ServeConfig, serve
    from .server.runner import ServerOptions

    def split(value: str | None) -> tuple[str, ...]:
        return tuple(v.strip() for v in (value or "").split(",") if v.strip())

    config = ServeConfig(
        model_dir=args.model_dir,
        model_name=args.model_name,
        version_name=args.version_name,
        framework=args.framework,
        prediction_class=args.prediction_class,
        packages=list(args.package),
        state_dir=args.state_dir,
        decode_b64=args.decode_b64,
        max_batch_size=args.max_batch_size or DEFAULT_MAX_BATCH_SIZE,
        max_batch_delay_ms=args.max_batch_delay_ms,
        server=ServerOptions(
            host=args.host,
            port=args.port,
            workers=args.workers,
            max_request_bytes=args.max_request_bytes,
            access_log=args.access_log,
            graceful_timeout=args.graceful_timeout,
            timeout_keep_alive=args.timeout_keep_alive,
            timeout_headers=args.timeout_headers,
            timeout_body=args.timeout_body,
            limit_concurrency=args.limit_concurrency,
        ),
        signature_name=args.signature_name,
        example=args.example,
        options=ServerOptionsView(
            api_key=args.api_key or os.environ.get("PREDICTOR_RUNTIME_API_KEY") or None,
            allow_paths=split(args.allow_paths),
            cors_origins=split(args.cors_origins),
            fetch_urls=not args.no_fetch_urls,
            task_ttl=args.task_ttl,
            max_pending_tasks=args.max_pending_tasks,
            task_lease=args.task_lease,
            state_url=args.state_url or os.environ.get("PREDICTOR_RUNTIME_STATE_URL") or None,
            ray_address=args.ray_address,
        ),
    )
    return serve(config)


def cmd_plugins(args: argparse.Namespace) -> int:
    """``plugins``: frameworks, the plugin and distribution behind each, files recognised."""
    from . import codecs
    from .plugins import framework_registry

    rows: list[dict[str, Any]] = [
        {
            "framework": info.name,
            "api_name": info.api_name,
            "plugin": info.plugin,
            "distribution": info.distribution,
            "model_files": list(info.model_files),
        }
        for info in sorted(framework_registry().frameworks.values(), key=lambda i: i.name)
    ]
    if args.json:
        sys.stdout.write(codecs.dumps(rows).decode() + "\n")
        return 0
    table = [["FRAMEWORK", "API NAME", "PLUGIN", "DISTRIBUTION", "MODEL FILES"]]
    for r in rows:
        files = ", ".join(r["model_files"]) or "(any, with --prediction-class)"
        table.append([r["framework"], r["api_name"] or "-", r["plugin"], r["distribution"], files])
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]) - 1)]
    for row in table:
        cells = [c.ljust(w) for c, w in zip(row, widths, strict=False)] + [row[-1]]
        sys.stdout.write("  ".join(cells).rstrip() + "\n")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if args.debug:
            raise
        if isinstance(exc, PredictorRuntimeError):
            message = str(exc)
        else:
            message = f"unexpected {type(exc).__name__}: {exc} (run with --debug for a traceback)"
        one_line = " ".join(message.split()) or type(exc).__name__
        sys.stderr.write(f"error: {one_line}\n")
        return 1
