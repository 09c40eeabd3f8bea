"""``python -m predictor_runtime``."""

from .cli import main

raise SystemExit(main())
