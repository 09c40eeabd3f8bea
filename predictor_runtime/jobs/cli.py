"""``python -m predictor_runtime batch-predict``: one batch prediction job from the shell.

Writes the same files as a job of the HTTP API. A progress bar (rows done, rows/s, ETA;
on stderr, only when it is a terminal) runs meanwhile, and a summary line ends it. Run
again with the same arguments after an interruption, it resumes: shards already written
are kept. With ``--ray-address`` the shards run on Ray Data actors instead.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .spec import DATA_FORMATS, DEFAULT_BATCH_SIZE


def add_parser(sub: Any) -> None:
    """Add the ``batch-predict`` sub-command to ``sub`` (argparse sub-parsers)."""
    p = sub.add_parser(
        "batch-predict",
        help="predict files of instances into AI Platform style prediction files",
        description="Run one batch prediction job: JSON Lines or text files in, "
        "prediction.results-* and prediction.errors_stats-* files out.",
    )
    p.add_argument("--model-dir", required=True, help="local directory with the model files")
    p.add_argument("--framework", help="framework name (see `plugins`); detected when omitted")
    p.add_argument("--prediction-class", help="custom predictor as module.Class or module:Class")
    p.add_argument(
        "--package", action="append", default=[], metavar="PATH", help="code for --prediction-class"
    )
    p.add_argument(
        "--input",
        action="append",
        required=True,
        metavar="GLOB",
        help="input file, folder glob or file:// URI (repeatable; quote globs)",
    )
    p.add_argument("--output", required=True, metavar="DIR", help="output folder")
    p.add_argument(
        "--data-format",
        choices=DATA_FORMATS,
        default="JSON",
        help="JSON: one JSON instance per line; TEXT: one string instance per line",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULT_BATCH_SIZE,
        help=f"rows per model call (default {DEFAULT_BATCH_SIZE})",
    )
    p.add_argument(
        "--workers", type=int, default=1, help="parallel worker processes or Ray actors (default 1)"
    )
    p.add_argument("--signature-name", help="TensorFlow signature (passed as signature_name)")
    p.add_argument(
        "--ray-address",
        default=None,
        help="run on Ray Data: local (start Ray in this process), auto (join the running "
        "cluster) or a cluster address; needs predictor-runtime[ray]",
    )
    p.add_argument("--state-dir", help="where custom code packages are unpacked")
    p.set_defaults(func=cmd_batch_predict)


def cmd_batch_predict(args: argparse.Namespace) -> int:
    """Run the job; print a one-line summary on stdout."""
    from ..cli import CliError
    from .runner import make_plan, run_plan
    from .spec import JobSpec, JobSpecError, ModelRef

    if args.ray_address:
        try:
            import ray  # noqa: F401
        except ImportError as exc:
            raise CliError(
                f"--ray-address needs Ray ({exc}); install 'predictor-runtime[ray]'"
            ) from None
    spec = JobSpec(
        inputs=list(args.input),
        output=args.output,
        data_format=args.data_format,
        batch_size=args.batch_size,
        workers=args.workers,
        kwargs={"signature_name": args.signature_name} if args.signature_name else {},
    )
    model = ModelRef(
        args.model_dir,
        framework=args.framework,
        prediction_class=args.prediction_class,
        packages=list(args.package),
        state_dir=args.state_dir,
    )
    try:
        plan = make_plan(spec)
    except JobSpecError as exc:
        raise CliError(exc.message) from None
    if plan.done:
        sys.stderr.write(
            f"resuming: {len(plan.done)} of {len(plan.shards)} shards already written\n"
        )
    bar = _Bar(plan.total_bytes - sum(_bytes(s) for s in plan.shards if s.index in plan.done))
    try:
        if args.ray_address:
            from .ray_data import run_on_ray

            result = run_on_ray(
                spec, plan, model, address=args.ray_address, on_shard=bar.shard_done
            )
        else:
            result = run_plan(spec, plan, model=model, on_progress=bar.update)
    finally:
        bar.close()
    rate = result.predictions / result.seconds if result.seconds > 0 else 0.0
    sys.stdout.write(
        f"batch-predict: {result.predictions} predictions, {result.errors} errors "
        f"({'see prediction.errors_stats-*' if result.errors else 'none'}), "
        f"{result.shards} shards in {plan.output} ({result.seconds:.1f} s, {rate:,.0f} rows/s)\n"
    )
    return 0


def _bytes(shard: Any) -> int:
    return int(shard.end - shard.start)


class _Bar:
    """tqdm in rows, its total estimated from the bytes read so far (quiet off a terminal)."""

    def __init__(self, total_bytes: int) -> None:
        from tqdm import tqdm

        self.total_bytes = max(total_bytes, 1)
        self.rows = 0
        self.bytes = 0
        self.bar = tqdm(
            total=None,
            unit=" rows",
            unit_scale=True,
            file=sys.stderr,
            disable=not sys.stderr.isatty(),
            dynamic_ncols=True,
        )

    def update(self, rows: int, nbytes: int) -> None:
        """Count ``rows`` more rows read from ``nbytes`` more bytes."""
        self.rows += rows
        self.bytes += nbytes
        if self.bytes and self.rows:
            self.bar.total = max(self.rows, round(self.rows * self.total_bytes / self.bytes))
        self.bar.update(rows)

    def shard_done(self, result: Any, nbytes: int) -> None:
        """A whole shard finished (Ray: per-shard progress only)."""
        self.update(result.predictions + result.errors, nbytes)

    def close(self) -> None:
        """Finish the bar."""
        if self.rows:
            self.bar.total = self.rows
            self.bar.refresh()
        self.bar.close()
