"""Distil with tasgen inside a plain PyTorch loop.

    python examples/train_loop.py specs/quickstart.yaml --set train.epochs=2

The teacher needs weights first (`tasgen train SPEC --role teacher`, or
`teacher.checkpoint` in the spec). tasgen builds the modules; the loop is yours.
"""

import argparse

import torch

import tasgen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="a.b=value")
    parser.add_argument("--steps", type=int, default=None, help="stop after this many steps")
    args = parser.parse_args()

    compiled = tasgen.compile(args.spec, args.overrides)
    plan, system, objective = compiled
    spec, device = compiled.spec, compiled.device
    train_loader, eval_loader = compiled.loaders()
    optimizer = torch.optim.AdamW(compiled.parameters(), lr=spec.train.optimizer.lr)

    step = 0
    for epoch in range(spec.train.epochs):
        system.train()
        for images, labels in train_loader:
            loss, terms = objective(system(images.to(device)), labels.to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            if args.steps is not None and step >= args.steps:
                break
        system.eval()
        correct = total = 0
        with torch.no_grad():
            for images, labels in eval_loader:
                logits, _ = system(images.to(device))["student"]
                correct += (logits.argmax(-1).cpu() == labels).sum().item()
                total += labels.numel()
        print(f"epoch {epoch + 1}: loss {loss.item():.4f}  student top-1 {100 * correct / total:.2f}%  ({plan.method})")
        if args.steps is not None and step >= args.steps:
            break


if __name__ == "__main__":
    main()
