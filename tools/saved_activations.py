"""What one training step keeps for backward, by part of the system (MiB).

Parts: the student's run (everything not below), the bridge, the global member's
stages the assistant runs (``global stage <i>``), the assistant's head (the global
member's final norm and classifier) and the objective (projection heads, losses). Each tensor autograd saves is counted once (by
storage), at the spec's batch and image size with random weights: unlike a timing,
the figure does not depend on the machine's load. docs/benchmarks.md quotes it.

    python tools/saved_activations.py specs/deit_t-to-resnet18.yaml
    python tools/saved_activations.py specs/deit_t-to-resnet18.yaml --set distill.method=kd
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import torch
from torch import nn

from tasgen.compiler import build_models, plan_spec
from tasgen.spec import load_spec
from tasgen.spec.load import LoadedSpec
from tasgen.train.setup import assemble_student_setup
from tasgen.train.step import SystemLoss

STUDENT = "student"


def saved_by_part(loaded: LoadedSpec) -> dict[str, float]:
    """MiB that one forward of the spec's training step saves for backward, per part."""
    spec = loaded.spec
    plan = plan_spec(loaded)
    torch.manual_seed(spec.seed)
    teacher, student = build_models(spec, plan, device="cpu")
    setup = assemble_student_setup(spec, plan, Path("."), torch.device("cpu"), teacher, student)
    step = SystemLoss(setup.system, setup.objective).train()
    parts: dict[str, list[nn.Module]] = {"objective": [setup.objective]}
    assistant = setup.system.assistant if hasattr(setup.system, "assistant") else None
    if assistant is not None:
        parts["bridge"] = [assistant.bridge]
        for i in range(assistant.global_start, assistant.glob.num_stages + 1):
            parts[f"global stage {i}"] = assistant.glob.stage_modules(i)

    # The innermost part running now; the teacher's own run is under no_grad and saves nothing.
    running = [STUDENT]
    for name, modules in parts.items():
        for module in modules:
            module.register_forward_pre_hook(lambda m, args, name=name: running.append(name))
            module.register_forward_hook(lambda m, args, out: running.pop() and None)
    if assistant is not None:  # its head is the global member's final modules and classifier: no module of its own
        parts["assistant head"] = []
        global_head = assistant.glob.head

        def head(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            running.append("assistant head")
            try:
                return global_head(x)
            finally:
                running.pop()

        assistant.glob.head = head
    saved: Counter[str] = Counter()
    seen: set[int] = set()

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in seen:
            seen.add(storage.data_ptr())
            saved[running[-1]] += storage.nbytes()
        return t

    g = torch.Generator().manual_seed(spec.seed)
    size = spec.data.image_size
    images = torch.rand(spec.data.batch_size, 3, size, size, generator=g)
    labels = torch.randint(0, plan.num_classes, (spec.data.batch_size,), generator=g)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step(images, labels)
    return {name: saved[name] / 2**20 for name in [STUDENT, *parts] if saved[name]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("spec")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a spec override")
    args = parser.parse_args()
    by_part = saved_by_part(load_spec(args.spec, args.set))
    for name, mib in by_part.items():
        print(f"{name:<20} {mib:8.1f} MiB")
    print(f"{'total':<20} {sum(by_part.values()):8.1f} MiB")


if __name__ == "__main__":
    main()
