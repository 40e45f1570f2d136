"""Where the assistant's time goes: each part of a TAS step timed alone, interleaved (seconds).

Parts, at the spec's batch and image size with random weights, each the median over
``--rounds`` rounds that run every part once (the order turning each round, as
`tasgen bench` does):

* ``teacher forward``: the teacher's whole forward under no_grad (what KD also runs);
* ``student forward+backward``: the student alone with cross-entropy (what KD also runs);
* ``bridge forward+backward``: the bridge from the local stage output it reads;
* ``global stages+head forward+backward``: the assistant's stages after the bridge and
  its head, from the bridge's output (for a frozen global member, only input
  gradients: its weights get none);
* ``assistant forward+backward``: bridge, global stages and head together;
* ``system+objective forward+backward``: the whole TAS step without the optimizer.

The first two are KD's floor; the next three are what the assistant adds to it before
its losses. docs/benchmarks.md quotes the output.

    python tools/assistant_cost.py specs/deit_t-to-resnet18.yaml --rounds 7
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable
from pathlib import Path

import torch

from tasgen.compiler import build_models, plan_spec
from tasgen.emit.staged import main as main_tensor
from tasgen.losses import cross_entropy
from tasgen.spec import load_spec
from tasgen.spec.load import LoadedSpec
from tasgen.train.setup import assemble_student_setup
from tasgen.train.step import SystemLoss


def part_steps(loaded: LoadedSpec) -> tuple[dict[str, Callable[[], None]], torch.nn.Module]:
    """One callable per part, each running that part once (forward, and backward where it
    trains), and the system they run."""
    spec = loaded.spec
    plan = plan_spec(loaded)
    if plan.method != "tas":
        raise SystemExit(f"{spec.name}: method {plan.method} has no assistant (set distill.method=tas)")
    torch.manual_seed(spec.seed)
    teacher, student = build_models(spec, plan, device="cpu")
    setup = assemble_student_setup(spec, plan, Path("."), torch.device("cpu"), teacher, student)
    system, assistant = setup.system, setup.system.assistant
    step = SystemLoss(system, setup.objective).train()
    g = torch.Generator().manual_seed(spec.seed)
    size = spec.data.image_size
    images = torch.rand(spec.data.batch_size, 3, size, size, generator=g)
    labels = torch.randint(0, plan.num_classes, (spec.data.batch_size,), generator=g)
    with torch.no_grad():  # the inputs each assistant part reads, as the system computes them
        norm = {"teacher": system.norm_teacher, "student": system.norm_student}
        local = assistant.forward_local(norm[plan.local_role](images))
        prefix = carry = None
        if assistant.reads_global:
            xg = norm[plan.global_role](images)
            prefix, carry = assistant.global_inputs(assistant.glob.forward_to(xg, assistant.prefix_depth))
        local = main_tensor(local)
        bridged = assistant.bridge(local, prefix)

    def backward(*outputs: torch.Tensor) -> None:
        sum(o.float().square().mean() for o in outputs).backward()
        step.zero_grad(set_to_none=True)

    xt, xs = system.norm_teacher(images), system.norm_student(images)

    def teacher_forward() -> None:
        with torch.no_grad():
            system._run(system.teacher_view, xt, ())

    def student_step() -> None:
        cross_entropy(student(xs), labels, 0.0).backward()
        student.zero_grad(set_to_none=True)

    def bridge_step() -> None:
        backward(assistant.bridge(local.clone().requires_grad_(), prefix))

    def global_step() -> None:
        x = bridged.clone().requires_grad_()
        state = (x, *carry) if carry else x
        recompute = assistant.recompute
        for i in range(assistant.global_start, assistant.glob.num_stages + 1):
            state = assistant.glob.stage(i, state, recompute)
        backward(*assistant.glob.head(state))

    def assistant_step() -> None:
        backward(*assistant.forward_from_local(local.clone().requires_grad_(), prefix, carry))

    def system_step() -> None:
        total, _ = step(images, labels)
        total.backward()
        step.zero_grad(set_to_none=True)

    return {
        "teacher forward": teacher_forward,
        "student forward+backward": student_step,
        "bridge forward+backward": bridge_step,
        "global stages+head forward+backward": global_step,
        "assistant forward+backward": assistant_step,
        "system+objective forward+backward": system_step,
    }, system


def part_seconds(loaded: LoadedSpec, rounds: int, warmup: int = 1) -> dict[str, float]:
    """Median seconds of each part over ``rounds`` interleaved rounds."""
    from tasgen.bench.timing import interleaved_seconds

    steps, _ = part_steps(loaded)
    for fn in steps.values():
        for _ in range(warmup):
            fn()
    times = interleaved_seconds(steps, rounds, torch.device("cpu"))
    return {name: statistics.median(ts) for name, ts in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("spec")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a spec override")
    args = parser.parse_args()
    seconds = part_seconds(load_spec(args.spec, args.set), args.rounds)
    floor = seconds["teacher forward"] + seconds["student forward+backward"]
    for name, s in seconds.items():
        print(f"{name:<38} {s:7.3f} s  {s / floor:5.2f} x KD's floor")
    print(f"{'KD floor (teacher + student)':<38} {floor:7.3f} s")


if __name__ == "__main__":
    main()
