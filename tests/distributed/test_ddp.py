"""DDP through torchrun on the CPU (gloo): sharding, rank-0-only files, equivalence, errors."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

# A frozen teacher with BN (eval mode: its statistics are fixed) and a BN-free
# student (patch stem with LayerNorm, attention stages), so that per-rank batch
# statistics cannot make the two-process run differ from the one-process run.
TEACHER = {
    "stem": {"channels": 16},
    "stages": [
        {"mixer": "conv", "channels": 16, "depth": 1},
        {"mixer": "conv", "channels": 32, "depth": 1, "stride": 2},
        {"mixer": "attention", "channels": 32, "depth": 1, "stride": 2, "heads": 2},
    ],
}
STUDENT = {
    "stem": {"kind": "patch", "channels": 16, "stride": 4},
    "stages": [
        {"mixer": "attention", "channels": 16, "depth": 1, "heads": 2},
        {"mixer": "attention", "channels": 32, "depth": 1, "stride": 2, "heads": 2},
    ],
}
ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spec(tmp_path: Path, teacher: Path, name: str, batch_size: int) -> Path:
    # 40 synthetic images, 8 held out: the 32 training images are exactly one global
    # batch, so each epoch is one update over the same images whatever the shuffle.
    spec = {
        "name": name,
        "teacher": {**TEACHER, "checkpoint": str(teacher)},
        "student": STUDENT,
        "distill": {"method": "kd"},
        "data": {"dataset": "synthetic", "image_size": 32, "batch_size": batch_size, "num_samples": 40,
                 "eval_fraction": 0.2, "val_fraction": 0, "augment": {"hflip": 0.0}},
        "train": {"epochs": 3, "output_dir": str(tmp_path / "runs"), "log_interval": 1,
                  "optimizer": {"name": "sgd", "lr": 0.05}, "schedule": {"name": "constant"}},
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tasgen.arch.models import create_model
    from tasgen.checkpoint import save_weights
    from tasgen.spec.schema import BackboneSpec

    torch.manual_seed(7)
    model = create_model(BackboneSpec.model_validate(TEACHER), num_classes=10, image_size=32)
    path = tmp_path_factory.mktemp("teacher") / "teacher.safetensors"
    save_weights(model.state_dict(), path)
    return path


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)


def _files(run_dir: Path) -> set[str]:
    return {str(p.relative_to(run_dir)) for p in run_dir.rglob("*")}


def _student(run_dir: Path) -> dict[str, torch.Tensor]:
    weights = load_file(run_dir / "last" / "model.safetensors")
    return {k: v for k, v in weights.items() if k.startswith("student.")}


def test_ranks_see_disjoint_samples_and_a_new_order_each_epoch() -> None:
    from tasgen.data import build_datasets, build_loaders
    from tasgen.spec.schema import DataSpec
    from tasgen.train.rng import reseed_loader

    data = DataSpec(dataset="synthetic", num_samples=100, batch_size=8)
    splits = build_datasets(data)
    train_ds, eval_ds = splits.train, splits.test
    orders = {}
    for epoch in (0, 1):
        shards = []
        for rank in (0, 1):
            loader, eval_loader = build_loaders(train_ds, eval_ds, data, 0, distributed=True, rank=rank, world_size=2)
            reseed_loader(loader, 0, epoch, rank)
            shards.append([i for batch in loader.batch_sampler for i in batch])
            assert len(shards[-1]) == len(loader) * data.batch_size
            if epoch == 0:
                orders[f"eval{rank}"] = list(eval_loader.sampler)
        assert not set(shards[0]) & set(shards[1])
        assert len(shards[0]) == len(shards[1])  # equal steps per rank: no rank waits in a collective
        orders[epoch] = shards
    assert orders[0] != orders[1]
    evals = orders["eval0"] + orders["eval1"]
    assert sorted(evals) == list(range(len(eval_ds)))  # each eval image counted once


@pytest.mark.slow
def test_two_processes_match_one_process_with_the_same_global_batch(tmp_path: Path, teacher: Path) -> None:
    """2 processes x batch 16 (launched with `--nproc 2`, resumed under torchrun) == 1 process x batch 32.

    Tolerance: the method is KD (per-image losses averaged over the batch, no
    InfoNCE whose negatives would be per process), the student has no BatchNorm and
    the teacher's BN is frozen, and every epoch is one update over the same 32
    images. DDP averages the two ranks' mean gradients, which equals the mean over
    32 images up to float32 summation order (relative 1e-7); three SGD updates of
    lr 0.05 keep the weights within 1e-5 of each other, while each run moves them
    by more than 1e-3 from the initial weights.
    """
    two = _spec(tmp_path, teacher, "two", batch_size=16)
    first = _run(["-m", "tasgen_cli", "train", str(two), "--nproc", "2", "--epochs", "1"])
    assert first.returncode == 0, first.stdout + first.stderr
    assert first.stdout.count("stopped after epoch 1 of 3") == 1  # rank 0 alone reports
    second = _run(["-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(_free_port()),
                   "-m", "tasgen_cli", "train", str(two), "--resume"])
    assert second.returncode == 0, second.stdout + second.stderr
    assert "resuming" in second.stdout and second.stdout.count("finished") == 1

    from tasgen.compiler import build_models, plan_spec
    from tasgen.spec.load import load_spec
    from tasgen.train import train
    from tasgen.train.rng import seed_everything

    one_spec = load_spec(_spec(tmp_path, teacher, "one", batch_size=32))
    one = train(one_spec, quiet=True)
    run_two = tmp_path / "runs" / "two"
    # Rank 1 wrote nothing of its own (the CLI adds the run's curves, the library call does not).
    assert _files(run_two) - {"curves.png", "curves.svg"} == _files(one.run_dir)
    assert {"curves.png", "curves.svg"} <= _files(run_two)

    a, b = _student(run_two), _student(one.run_dir)
    seed_everything(0)
    init = build_models(one_spec.spec, plan_spec(one_spec))[1].state_dict()
    moved = max((b[k] - init[k.removeprefix("student.")]).abs().max().item() for k in b)
    assert moved > 1e-3
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-5, msg=key)
    rows_two = [json.loads(line) for line in (run_two / "metrics.jsonl").read_text().splitlines()]
    rows_one = [json.loads(line) for line in (one.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows_two] == [1, 2, 3]
    for r2, r1 in zip(rows_two, rows_one, strict=True):  # the logged loss is the global batch's mean
        assert r2["loss"] == pytest.approx(r1["loss"], abs=1e-5)


@pytest.mark.slow
def test_a_user_error_under_nproc_exits_2_once_without_traceback(tmp_path: Path, teacher: Path) -> None:
    spec = _spec(tmp_path, teacher, "nothing", batch_size=16)
    result = _run(["-m", "tasgen_cli", "train", str(spec), "--nproc", "2", "--resume"])
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.count("error: nothing to resume") == 1
    assert "Traceback" not in result.stderr


def _nan_worker(rank: int, store_file: str) -> None:
    import torch.distributed as tdist

    from tasgen.train.errors import TrainError
    from tasgen.train.loss_tracker import LossTracker

    tdist.init_process_group("gloo", store=tdist.FileStore(store_file, 2), rank=rank, world_size=2)
    try:
        tracker = LossTracker(["ce"], torch.device("cpu"))
        bad = float("nan") if rank == 1 else 1.0
        tracker.add(torch.tensor(1.0), {"ce": torch.tensor(1.0)}, step=1)
        tracker.add(torch.tensor(bad), {"ce": torch.tensor(bad)}, step=2)
        try:
            tracker.check()
        except TrainError as exc:
            assert "step 2" in str(exc)
        else:
            raise AssertionError(f"rank {rank} did not stop")
    finally:
        tdist.destroy_process_group()


@pytest.mark.slow
def test_a_nan_on_one_rank_stops_every_rank(tmp_path: Path) -> None:
    torch.multiprocessing.spawn(_nan_worker, args=(str(tmp_path / "store"),), nprocs=2, join=True)


def _confidence_worker(rank: int, store_file: str, out_dir: str) -> None:
    import torch.distributed as tdist

    from tasgen.losses.logit_temperature import teacher_confidence
    from tests.losses.test_logit_temperature import Augmented, Teacher

    tdist.init_process_group("gloo", store=tdist.FileStore(store_file, 2), rank=rank, world_size=2)
    try:
        data = Augmented()
        confidence, count = teacher_confidence(Teacher(), data, torch.device("cpu"), max_images=30, rank=rank,
                                               world_size=2)
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps([confidence, count, data.reads]))
    finally:
        tdist.destroy_process_group()


def test_two_processes_measure_the_teachers_confidence_of_one(tmp_path: Path) -> None:
    """kd's temperature auto under DDP: each rank reads half the sample, and every rank gets the one-process value."""
    from tasgen.losses.logit_temperature import teacher_confidence
    from tests.losses.test_logit_temperature import Augmented, Teacher

    torch.multiprocessing.spawn(_confidence_worker, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=2,
                                join=True)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    data = Augmented()
    confidence, count = teacher_confidence(Teacher(), data, torch.device("cpu"), max_images=30)
    assert [r[1] for r in ranks] == [30, 30] and count == 30
    assert sorted(ranks[0][2] + ranks[1][2]) == sorted(data.reads) and not set(ranks[0][2]) & set(ranks[1][2])
    for rank_confidence, _, _ in ranks:
        assert rank_confidence == pytest.approx(confidence, rel=1e-12)
