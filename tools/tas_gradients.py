"""Where a TAS step's gradients point: each loss term against the student's own CE.

Trains a spec's TAS system (the spec's schedule, optimizer and data) and, every
``--every`` steps, differentiates each loss term of the step separately with
respect to the student's parameters, split in two groups:

* ``shared``: the student parameters the assistant borrows (its stages on the
  assistant's path), the ones the teacher -> assistant pair can reach;
* ``own``: the rest of the student.

For each term it prints the cosine of its gradient with the CE gradient and its
norm relative to the CE gradient's norm, per group. A term whose gradient on the
shared stages is large and not aligned with CE is a term that trains the
student's stages for another model's sake. It also prints the share of in-batch
InfoNCE negatives that are of the query's own class.

    python tools/tas_gradients.py specs/study/vit-to-cnn.yaml \
        --set teacher.checkpoint=runs/study/vit-to-cnn/teacher.safetensors --steps 600 --every 50

The term values are the weighted terms the trainer sums; the step taken is the
trainer's (AdamW on the sum), so the trajectory is a real TAS run's.
"""

from __future__ import annotations

import argparse
import json
import math
import sys


def _flat(grads, params):
    import torch

    return torch.cat([(g if g is not None else torch.zeros_like(p)).flatten() for g, p in zip(grads, params, strict=True)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--every", type=int, default=50)
    parser.add_argument("--json", default=None, help="write the rows to this file")
    parser.add_argument("--untrained-teacher", action="store_true",
                        help="a randomly initialised teacher (a smoke test of the tool, not a measurement)")
    parser.add_argument("--summary", default=None, metavar="JSON",
                        help="print the mean over a written run's rows (first half, second half) and exit")
    args = parser.parse_args(argv)
    if args.summary:
        with open(args.summary) as f:
            summarise(json.load(f))
        return 0

    import torch

    import tasgen
    from tasgen.train.optim import build_optimizer, build_scheduler

    torch.manual_seed(0)
    compiled = tasgen.compile(args.spec, overrides=["distill.method=tas", *args.overrides], device="cpu",
                              untrained_teacher=args.untrained_teacher)
    plan, system, objective = compiled
    spec = compiled.spec
    train_loader, _ = compiled.loaders()
    optimizer = build_optimizer(compiled.trainable, spec.train.optimizer)
    scheduler = build_scheduler(optimizer, spec.train.schedule, spec.train.epochs, len(train_loader))
    student = compiled.student
    named = [(n, p) for n, p in student.named_parameters() if p.requires_grad]
    system.train()

    rows = []
    step = 0
    while step < args.steps:
        for images, labels in train_loader:
            outputs = system(images)
            total, terms = objective(outputs, labels)
            if step % args.every == 0:
                # Which student parameters the assistant reaches: those the T->A pair has a gradient for.
                ta = [v for k, v in terms.items() if k.startswith("teacher_assistant")]
                probe = torch.autograd.grad(sum(ta), [p for _, p in named], retain_graph=True, allow_unused=True)
                shared = [g is not None and bool(g.abs().sum() > 0) for g in probe]
                groups = {
                    "shared": [p for (_, p), s in zip(named, shared, strict=True) if s],
                    "own": [p for (_, p), s in zip(named, shared, strict=True) if not s],
                }
                row = {"step": step, "lr": optimizer.param_groups[0]["lr"],
                       "terms": {k: float(v.detach()) for k, v in terms.items()}}
                for gname, gparams in groups.items():
                    if not gparams:
                        continue
                    ce = _flat(torch.autograd.grad(terms["ce"], gparams, retain_graph=True, allow_unused=True), gparams)
                    per = {}
                    for k, v in terms.items():
                        if k == "ce":
                            continue
                        g = _flat(torch.autograd.grad(v, gparams, retain_graph=True, allow_unused=True), gparams)
                        n = float(g.norm())
                        cos = float(torch.dot(g, ce) / (g.norm() * ce.norm() + 1e-12)) if n > 0 else float("nan")
                        per[k] = {"cos_ce": cos, "rel_norm": n / (float(ce.norm()) + 1e-12)}
                    distill = [k for k in terms if k != "ce"]
                    g_all = _flat(torch.autograd.grad(sum(terms[k] for k in distill), gparams, retain_graph=True,
                                                      allow_unused=True), gparams)
                    per["all_distill"] = {"cos_ce": float(torch.dot(g_all, ce) / (g_all.norm() * ce.norm() + 1e-12)),
                                          "rel_norm": float(g_all.norm()) / (float(ce.norm()) + 1e-12)}
                    row[gname] = {"numel": sum(p.numel() for p in gparams), "ce_norm": float(ce.norm()), **per}
                same = (labels[:, None] == labels[None, :]).float()
                row["same_class_negatives"] = float((same.sum() - len(labels)) / (len(labels) * (len(labels) - 1)))
                with torch.no_grad():
                    row["acc"] = {m: float((o[0].argmax(-1) == labels).float().mean()) for m, o in outputs.items()}
                rows.append(row)
                _print(row)
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            optimizer.step()
            step += 1
            scheduler.step_update(step)
            if step >= args.steps:
                break
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


def summarise(rows: list[dict]) -> None:
    """Mean cosine with CE and mean relative norm per term and group, over each half of the run."""
    half = len(rows) // 2
    for label, part in (("first half", rows[:half]), ("second half", rows[half:])):
        print(f"{label}: steps {part[0]['step']}-{part[-1]['step']} ({len(part)} rows)")
        for group in ("shared", "own"):
            terms = [k for k, v in part[0].get(group, {}).items() if isinstance(v, dict)]
            for k in terms:
                vals = [r[group][k] for r in part if not math.isnan(r[group][k]["cos_ce"])]
                if vals:
                    cos = sum(v["cos_ce"] for v in vals) / len(vals)
                    rel = sum(v["rel_norm"] for v in vals) / len(vals)
                    print(f"  {group:6s} {k:30s} cos {cos:+.2f}  norm x{rel:.2f}")


def _print(row: dict) -> None:
    parts = [f"step {row['step']:5d}", "acc " + " ".join(f"{m[0]}={a:.2f}" for m, a in row["acc"].items())]
    for g in ("shared", "own"):
        if g not in row:
            continue
        cells = []
        for k, v in row[g].items():
            if isinstance(v, dict):
                short = "".join(w[0] for w in k.split(".")[0].split("_")) + "." + k.split(".")[-1][0] if "." in k else k
                c = v["cos_ce"]
                cells.append(f"{short} cos {c:+.2f} x{v['rel_norm']:.2f}" if not math.isnan(c) else f"{short} -")
        parts.append(f"[{g} {row[g]['numel']}] " + ", ".join(cells))
    print(" | ".join(parts), flush=True)


if __name__ == "__main__":
    sys.exit(main())
