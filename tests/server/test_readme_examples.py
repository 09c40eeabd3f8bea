"""The README's examples, extracted from README.md and run exactly as printed.

Only the server address is substituted (the test server listens on a free port).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

README = Path(__file__).resolve().parents[2] / "README.md"


def code_block(after: str, lang: str) -> str:
    """The first ``lang`` fenced block following the text ``after`` in the README."""
    text = README.read_text()
    start = text.index(after)
    m = re.compile(rf"```{lang}\n(.*?)```", re.S).search(text, start)
    assert m is not None, f"no {lang} block after {after!r}"
    return m.group(1)


def test_googleapiclient_example_runs_as_printed(
    cli_server: Any, echo_model: Any, tmp_path: Path
) -> None:
    code = code_block("<!-- googleapiclient-example -->", "python")
    assert "http://127.0.0.1:8080" in code
    # any served model will do (the bundled example's first training is slow)
    model_dir, pkg = echo_model()
    echo = ["--model-dir", str(model_dir), "--package", str(pkg)]
    echo += ["--prediction-class", "echo_predictor.EchoPredictor"]
    srv = cli_server(["--state-dir", str(tmp_path / "state"), *echo])
    script = tmp_path / "deploy.py"
    script.write_text(code.replace("http://127.0.0.1:8080", srv.url))
    out = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=180
    )
    assert out.returncode == 0, out.stderr
    expected = code.strip().splitlines()[-1].removeprefix("# ")
    assert out.stdout.strip() == expected
    assert (tmp_path / "models" / "shop" / "v1" / "model.joblib").is_file()


def test_writing_a_predictor_example_runs_as_printed(tmp_path: Path) -> None:
    predictor = code_block("Put it in `my_code/predictor.py`", "python")
    (tmp_path / "my_code").mkdir()
    (tmp_path / "my_code" / "predictor.py").write_text(predictor)
    shell = code_block("Make a `model/model.joblib` for it", "bash")
    shell = shell.replace("python -m", f"{sys.executable} -m").replace(
        "python -c", f"{sys.executable} -c"
    )
    out = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", shell],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert out.returncode == 0, out.stderr
    expected = shell.strip().splitlines()[-1].removeprefix("# ")
    assert out.stdout.strip() == expected
