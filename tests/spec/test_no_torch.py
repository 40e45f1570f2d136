"""The spec front end must never import torch or timm (fast `tasgen validate`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_spec_package_does_not_import_torch(write_spec, minimal_spec: str) -> None:
    path = write_spec(minimal_spec)
    code = (
        "import sys\n"
        "from tasgen.spec import load_spec, json_schema, reference_markdown\n"
        f"load_spec({str(path)!r}, ['train.epochs=2'])\n"
        "json_schema(); reference_markdown()\n"
        "heavy = sorted(m for m in ('torch', 'timm', 'torchvision') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(path).parent
    )
    assert result.returncode == 0, result.stderr
