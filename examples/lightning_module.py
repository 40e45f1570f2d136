"""Distil with tasgen inside a Lightning `LightningModule` (pip install "tasgen[lightning]").

    python examples/lightning_module.py specs/quickstart.yaml --set train.epochs=2

tasgen compiles the spec into the system and the objective; Lightning runs the
loop, devices, precision and logging. The teacher needs weights first
(`tasgen train SPEC --role teacher`, or `teacher.checkpoint` in the spec).
"""

import argparse

import lightning as L
import torch

import tasgen


class TASDistillation(L.LightningModule):
    """The compiled system and objective as a LightningModule."""

    def __init__(self, spec: str, overrides: list[str]) -> None:
        super().__init__()
        self.compiled = tasgen.compile(spec, overrides, device="cpu")  # Lightning moves it
        self.system = self.compiled.system
        self.objective = self.compiled.objective
        self.lr = self.compiled.spec.train.optimizer.lr

    def training_step(self, batch, batch_idx):
        images, labels = batch
        loss, terms = self.objective(self.system(images), labels)
        self.log("train/loss", loss, prog_bar=True)
        self.log_dict({f"train/{k}": v for k, v in terms.items()})
        return loss

    def validation_step(self, batch, batch_idx):
        images, labels = batch
        logits, _ = self.system(images)["student"]
        self.log("val/student_top1", (logits.argmax(-1) == labels).float().mean() * 100, prog_bar=True)

    def configure_optimizers(self):
        return torch.optim.AdamW(self.compiled.parameters(), lr=self.lr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="a.b=value")
    parser.add_argument("--steps", type=int, default=None, help="training steps per epoch (default: all)")
    args = parser.parse_args()

    module = TASDistillation(args.spec, args.overrides)
    train_loader, eval_loader = module.compiled.loaders()
    trainer = L.Trainer(max_epochs=module.compiled.spec.train.epochs, limit_train_batches=args.steps,
                        logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.fit(module, train_loader, eval_loader)
    print({k: round(float(v), 4) for k, v in trainer.callback_metrics.items()})


if __name__ == "__main__":
    main()
