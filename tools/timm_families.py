"""How many of timm's model families tasgen reads: plan each both ways, check each against a real forward.

One representative per timm module (family): the first of its model names in
sorted order. Each is planned on the meta device at 224 px (else at its default
input size), as the teacher of resnet18 and as the student of
deit_tiny_patch16_224, and its
stage table is checked against a real forward at a small size (the first of
64, 56, 112 px and its default size that it reads at): running the parts in
turn must give ``model(x)``.

    python tools/timm_families.py                 # all families
    python tools/timm_families.py --families levit eva

Prints one line per family and the counts; refusals show the sentence a user sees.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings


def representatives(families: list[str] | None = None) -> dict[str, str]:
    """{timm module: its first model name in sorted order}."""
    import timm

    names = {m: sorted(timm.list_models(module=m)) for m in timm.list_modules()}
    picked = {m: n[0] for m, n in sorted(names.items()) if n}
    if families:
        unknown = [f for f in families if f not in picked]
        if unknown:
            raise SystemExit(f"unknown timm module(s): {', '.join(unknown)}; see timm.list_modules()")
        picked = {f: picked[f] for f in families}
    return picked


def _default_size(name: str) -> int:
    import timm

    cfg = timm.models.get_pretrained_cfg(name)
    return int(cfg.input_size[-1]) if cfg is not None else 224


def plan_both_ways(name: str, size: int) -> str | None:
    """None when `name` plans as the teacher of resnet18 and as the student of deit_tiny; else the reason."""
    from tasgen.arch.models import stage_table
    from tasgen.planner import build_plan
    from tasgen.spec.schema import Spec

    for teacher, student in ((name, "resnet18"), ("deit_tiny_patch16_224", name)):
        spec = Spec.model_validate({"name": "families", "teacher": {"timm": teacher}, "student": {"timm": student},
                                    "data": {"image_size": size}})
        try:
            tables = [stage_table(getattr(spec, r), role=r, num_classes=10, image_size=size, use_cache=False)
                      for r in ("teacher", "student")]
            plan = build_plan(spec, *tables, num_classes=10, image_size=size)
        except Exception as exc:  # noqa: BLE001 - the report shows what a user would see
            return f"{type(exc).__name__}: {exc}"
        if plan.method == "tas" and not all(t.staged for t in tables):
            return next(t.staged_error for t in tables if not t.staged)
    return None


def check_real_forward(name: str, default: int) -> str | None:
    """None when running the stage table's parts in turn gives ``model(x)``; else the reason."""
    import torch

    from tasgen.arch.models import create_model, stage_table
    from tasgen.emit.staged import StagedModel
    from tasgen.spec.schema import TimmModelSpec

    spec = TimmModelSpec(timm=name)
    reason = "no image size to read it at"
    for size in dict.fromkeys((64, 56, 112, default)):
        try:
            table = stage_table(spec, role="check", num_classes=10, image_size=size, use_cache=False)
        except Exception as exc:  # noqa: BLE001
            reason = f"{type(exc).__name__}: {exc}"
            continue
        if not table.staged:
            return table.staged_error
        torch.manual_seed(0)
        model = create_model(spec, num_classes=10, image_size=size).eval()
        x = torch.randn(2, table.input_size[0], size, size)
        with torch.no_grad():
            logits, _ = StagedModel(model, table).forward(x)
            expected = model(x)
        if not torch.allclose(logits, expected, rtol=1e-4, atol=1e-4):
            return f"its parts run in turn differ from model(x) at {size} px"
        return None
    return reason


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="*", help="timm modules to measure (default: all)")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    rows = []
    for family, name in representatives(args.families).items():
        start = time.perf_counter()
        default = _default_size(name)
        refused = plan_both_ways(name, 224)
        if refused is not None and default != 224:
            refused = plan_both_ways(name, default) and refused
        if refused is None:
            try:
                refused = check_real_forward(name, default)
            except Exception as exc:  # noqa: BLE001
                refused = f"{type(exc).__name__}: {exc}"
        rows.append({"family": family, "model": name, "ok": refused is None, "reason": refused})
        status = "ok" if refused is None else "refused: " + refused.splitlines()[0][:300]
        print(f"{family:28s} {name:36s} {time.perf_counter() - start:5.1f}s  {status}", flush=True)
    ok = sum(r["ok"] for r in rows)
    print(f"\n{ok} of {len(rows)} families plan both ways and pass the real-forward check")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
