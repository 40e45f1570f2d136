"""The engine's options combine: AdamW, step/constant schedules, accumulation, clipping, bf16, EMA."""

from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file

from tasgen.train import export_student, train


@pytest.mark.parametrize("schedule", ["step", "constant"])
def test_options_run(make_spec, tmp_path, schedule):
    spec = make_spec(train={
        "optimizer": {"name": "adamw", "lr": 1e-3, "weight_decay": 0.05},
        "schedule": {"name": schedule, "warmup_epochs": 1, "decay_epochs": 1},
        "accumulate": 2, "grad_clip": 1.0, "precision": "bf16", "ema": {"enabled": True, "decay": 0.5},
    })
    result = train(spec, quiet=True)
    row = json.loads((result.run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    assert row["step"] == 2  # 3 batches per epoch, 2 per update: 1 update per epoch
    assert "student_ema_top1" in row
    assert any(k.startswith("ema.") for k in load_file(result.run_dir / "last" / "model.safetensors"))
    out = export_student(result.run_dir, tmp_path / "ema.safetensors", ema=True)
    assert load_file(out).keys() == {k.removeprefix("student.") for k in
                                     load_file(result.run_dir / "last" / "model.safetensors") if k.startswith("student.")}


def test_engine_options_take_effect(make_spec, tmp_path, monkeypatch):
    """AdamW's state and decay groups, the schedule's lr at each update, clipping's norm, EMA's weights."""
    import torch

    import tasgen.train.step as step_module
    from tasgen.compiler import plan_spec
    from tasgen.train.setup import build_student_setup
    from tasgen.train.step import build_engine

    lr, warmup_lr, clip, decay = 1e-2, 1e-4, 1e-3, 0.5
    loaded = make_spec(distill={"method": "none"}, train={
        "optimizer": {"name": "adamw", "lr": lr, "weight_decay": 0.05},
        "schedule": {"name": "step", "warmup_epochs": 1, "warmup_lr": warmup_lr, "decay_epochs": 1, "decay_rate": 0.1},
        "accumulate": 2, "grad_clip": clip, "ema": {"enabled": True, "decay": decay},
    })
    spec = loaded.spec
    setup = build_student_setup(spec, plan_spec(loaded), tmp_path, torch.device("cpu"), None)
    updates_per_epoch = 2
    engine = build_engine(setup, updates_per_epoch)

    # AdamW, with timm's rule: no weight decay on biases and norm weights.
    assert type(engine.optimizer) is torch.optim.AdamW
    decays = {g["weight_decay"]: sum(p.numel() for p in g["params"]) for g in engine.optimizer.param_groups}
    assert set(decays) == {0.0, 0.05}
    one_d = sum(p.numel() for p in setup.optimised.parameters() if p.ndim <= 1)
    assert decays[0.0] == one_d

    clipped: list[tuple[float, float]] = []  # (norm before, norm after) of each clipped update
    clip_grad_norm = torch.nn.utils.clip_grad_norm_

    def spy(params, max_norm, *args, **kwargs):
        params = list(params)
        before = clip_grad_norm(params, max_norm, *args, **kwargs)
        after = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in params]))
        clipped.append((float(before), float(after)))
        return before

    monkeypatch.setattr(step_module.torch.nn.utils, "clip_grad_norm_", spy)

    torch.manual_seed(0)
    images, labels = torch.rand(16, 3, 32, 32), torch.randint(0, 10, (16,))
    lrs, weights = [], []
    for update in range(1, 5):
        engine.micro_step(images, labels, update=False)  # accumulate: 2 micro-batches per update
        assert engine.step == update - 1
        engine.micro_step(images, labels, update=True)
        assert engine.step == update
        lrs.append(engine.lr)
        weights.append({k: v.detach().clone() for k, v in setup.trained_model.state_dict().items()})
        state = engine.optimizer.state[engine.params[0]]
        assert int(state["step"]) == update and state["exp_avg"].abs().sum() > 0 and state["exp_avg_sq"].min() >= 0

    # The lr of each update: linear warm-up over the first epoch, then x0.1 per epoch.
    want = [warmup_lr, warmup_lr + (lr - warmup_lr) / 2, lr * 0.1, lr * 0.1]
    assert lrs == pytest.approx(want, rel=1e-6)
    # Clipping: the gradients were larger than the bound and left at it.
    assert len(clipped) == 4
    assert all(before > clip and after == pytest.approx(clip, rel=1e-3) for before, after in clipped)
    # EMA (timm's ModelEmaV3): a copy at the first update, then ema = decay * ema + (1 - decay) * weights.
    ema = {k: v for k, v in engine.ema.module.state_dict().items()}
    expected = weights[0]
    for w in weights[1:]:
        expected = {k: decay * expected[k] + (1 - decay) * w[k] if w[k].is_floating_point() else w[k] for k in w}
    for k, v in expected.items():
        torch.testing.assert_close(ema[k], v, msg=k)
    assert any(not torch.equal(ema[k], weights[-1][k]) for k in ema if ema[k].is_floating_point())


VIT_STUDENT = {"timm": "vit_tiny_patch16_224", "kwargs": {"depth": 2, "embed_dim": 32, "num_heads": 2, "patch_size": 8}}


@pytest.mark.parametrize(("method", "student"), [("tas", None), ("ofa", None), ("none", None), ("tas", VIT_STUDENT)],
                         ids=["tas", "ofa", "none", "tas-vit-student"])
def test_flops_per_image_is_what_a_real_step_counts(make_spec, tmp_path, method, student):
    """MFU's numerator, counted on a meta-device twin, equals FlopCounterMode on the real models."""
    import torch

    from tasgen.compiler import build_models, plan_spec
    from tasgen.train.setup import assemble_student_setup
    from tasgen.train.step import SystemLoss, flops_per_image, model_flops, step_flops

    loaded = make_spec(distill={"method": method}, **({"student": student} if student else {}))
    plan = plan_spec(loaded)
    teacher, student = build_models(loaded.spec, plan, device="cpu")
    setup = assemble_student_setup(loaded.spec, plan, tmp_path, torch.device("cpu"), teacher, student)
    batch = loaded.spec.data.batch_size
    images, labels = torch.rand(batch, 3, 32, 32), torch.randint(0, 10, (batch,))
    real = model_flops(setup.system, images)
    assert 0 < real <= step_flops(SystemLoss(setup.system, setup.objective), images, labels)  # losses: a few matmuls
    # Attention on the meta device takes PyTorch's math path, which FlopCounterMode counts a
    # little higher than the fused CPU kernel (0.6 % for the TAS system of backbones).
    assert flops_per_image(setup) == pytest.approx(real / batch, rel=0.05)


def test_mfu_measures_leave_the_random_state_alone(make_spec, tmp_path):
    """A resumed run must stay identical to an uninterrupted one: counting FLOPs draws no random numbers."""
    import torch

    from tasgen.compiler import build_models, plan_spec
    from tasgen.train.setup import assemble_student_setup
    from tasgen.train.step import flops_per_image, matmul_peak

    loaded = make_spec()
    plan = plan_spec(loaded)
    teacher, student = build_models(loaded.spec, plan, device="cpu")
    setup = assemble_student_setup(loaded.spec, plan, tmp_path, torch.device("cpu"), teacher, student)
    torch.manual_seed(5)
    before = torch.get_rng_state()
    assert flops_per_image(setup) > 0 and matmul_peak.__wrapped__(torch.device("cpu"), repeats=1) > 0
    assert torch.equal(before, torch.get_rng_state())
