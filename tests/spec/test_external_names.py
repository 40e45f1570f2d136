"""hf-hub:, local-dir: and pretrained tags are validated without importing torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_tags_and_local_dirs_validate_without_torch(tmp_path: Path, write_spec, minimal_spec: str) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"architecture": "resnet18", "num_classes": 10}))
    good = write_spec(minimal_spec.replace("{timm: resnet18}", f"{{timm: \"local-dir:{folder}\"}}"), "good.yaml")
    assert f"local-dir:{folder}" in good.read_text()
    code = (
        "import sys\n"
        "from tasgen.spec import SpecError, load_spec\n"
        f"load_spec({str(good)!r})\n"
        f"load_spec({str(good)!r}, ['teacher.timm=vit_small_patch16_224.augreg_in21k_ft_in1k'])\n"
        f"load_spec({str(good)!r}, ['teacher.timm=hf-hub:timm/resnet18.a1_in1k'])\n"
        "try:\n"
        f"    load_spec({str(good)!r}, ['teacher.timm=resnet18.no_such_tag'])\n"
        "except SpecError as err:\n"
        "    assert 'no pretrained tag' in str(err), err\n"
        "else:\n"
        "    raise AssertionError('an unknown tag passed')\n"
        "heavy = sorted(m for m in ('torch', 'timm', 'torchvision') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
