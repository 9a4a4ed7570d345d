"""The training engine on the CPU: lr schedules, parameter groups, data order, checkpoints, exact resume,
NaN stop, metrics.json and evaluation periods. Small models on random tensors."""
import copy
import json
import os
import random

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import Dataset

from s3d_det.engine import (
    EpochBatchSampler,
    Trainer,
    TrainLoader,
    build_lr_scheduler,
    build_optimizer,
    last_checkpoint,
    load_checkpoint,
    save_checkpoint,
    seed_all,
)
from s3d_det.engine.events import truncate_metrics


class RandomData(Dataset):
    """``n`` samples {"x": (4,), "y": (1,)} of seeded random numbers; records set_epoch calls."""

    def __init__(self, n=12):
        g = torch.Generator().manual_seed(0)
        self.x, self.y = torch.randn(n, 4, generator=g), torch.randn(n, 1, generator=g)
        self.epochs = []

    def set_epoch(self, epoch):
        self.epochs.append(epoch)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"x": self.x[i], "y": self.y[i], "index": i}


class Net(nn.Module):
    """Dropout draws from torch's RNG; the loss also draws from numpy's and Python's, so all three matter."""

    def __init__(self, nan_at_call=None):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 1))
        self.calls, self.nan_at_call = 0, nan_at_call

    def forward(self, batch):
        pred = self.body(batch["x"])
        noise = 1e-3 * (float(np.random.rand()) + random.random())
        l1 = (pred - batch["y"]).abs().mean() + noise
        if self.calls == self.nan_at_call:
            l1 = l1 * float("nan")
        self.calls += 1
        return {"loss_mse": F.mse_loss(pred, batch["y"]), "loss_l1": l1}


def make_trainer(output_dir, *, max_iter=8, model_seed=0, model=None, schedule=None, **kwargs):
    torch.manual_seed(model_seed)
    model = model or Net()
    optimizer = build_optimizer(model, lr=0.1, momentum=0.9, weight_decay=1e-3)
    scheduler = build_lr_scheduler(optimizer, max_iter=max_iter,
                                   **(schedule or dict(schedule="cosine", warmup_iters=2, warmup_factor=0.5)))
    options = dict(checkpoint_period=4, log_period=1, tensorboard=False)
    options.update(kwargs)
    return Trainer(model, dataset=RandomData(), batch_size=4, optimizer=optimizer, scheduler=scheduler,
                   max_iter=max_iter, output_dir=str(output_dir), **options)


def read_metrics(output_dir):
    with open(os.path.join(output_dir, "metrics.json")) as f:
        return [json.loads(line) for line in f]


def lrs(scheduler, optimizer, n):
    out = []
    for _ in range(n):
        out.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return out


def test_warmup_then_steps():
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = build_lr_scheduler(optimizer, max_iter=10, schedule="step", steps=(6, 8), gamma=0.1,
                                   warmup_iters=4, warmup_factor=0.1)
    # warm-up from 0.1 to 1 over 4 iterations (0.1 + 0.9 * i / 4), then x0.1 at 6 and at 8
    assert lrs(scheduler, optimizer, 10) == pytest.approx([0.1, 0.325, 0.55, 0.775, 1, 1, 0.1, 0.1, 0.01, 0.01])


def test_cosine_and_state_round_trip():
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = build_lr_scheduler(optimizer, max_iter=4, schedule="cosine", final_factor=0.2)
    # 0.2 + 0.8 * (1 + cos(pi * i / 4)) / 2 with cos(pi / 4) = 0.70710678
    assert lrs(scheduler, optimizer, 2) == pytest.approx([1.0, 0.88284271])
    fresh_optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    fresh = build_lr_scheduler(fresh_optimizer, max_iter=4, schedule="cosine", final_factor=0.2)
    fresh_optimizer.load_state_dict(optimizer.state_dict())
    fresh.load_state_dict(scheduler.state_dict())
    assert lrs(fresh, fresh_optimizer, 2) == pytest.approx([0.6, 0.31715729])


def test_bad_schedule_arguments():
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    with pytest.raises(ValueError, match="unknown lr schedule 'poly'"):
        build_lr_scheduler(optimizer, max_iter=10, schedule="poly")
    with pytest.raises(ValueError, match="increasing"):
        build_lr_scheduler(optimizer, max_iter=10, steps=(8, 6))


def test_param_groups_without_decay_on_norms_and_biases():
    conv, norm, linear, frozen = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Linear(4, 2), nn.Linear(2, 2)
    frozen.requires_grad_(False)
    model = nn.Sequential(conv, norm, linear, frozen, linear)  # linear twice: optimised once

    def groups(optimizer):
        return {g["weight_decay"]: {id(p) for p in g["params"]} for g in optimizer.param_groups}

    ids = lambda *ps: {id(p) for p in ps}  # noqa: E731
    assert groups(build_optimizer(model, lr=0.1, weight_decay=1e-4)) == {
        1e-4: ids(conv.weight, conv.bias, linear.weight, linear.bias), 0.0: ids(norm.weight, norm.bias)}
    optimizer = build_optimizer(model, lr=0.1, weight_decay=1e-4, weight_decay_bias=0.0, momentum=0.8)
    assert groups(optimizer) == {1e-4: ids(conv.weight, linear.weight),
                                 0.0: ids(conv.bias, norm.weight, norm.bias, linear.bias)}
    assert optimizer.defaults["momentum"] == 0.8 and optimizer.defaults["lr"] == 0.1
    adamw = build_optimizer(model, name="adamw", lr=0.01, weight_decay=1e-4, momentum=0.8)
    assert isinstance(adamw, torch.optim.AdamW) and adamw.defaults["betas"] == (0.8, 0.999)
    assert groups(adamw) == {1e-4: ids(conv.weight, conv.bias, linear.weight, linear.bias),
                             0.0: ids(norm.weight, norm.bias)}
    with pytest.raises(ValueError, match="unknown optimizer 'adam'"):
        build_optimizer(model, name="adam", lr=0.1)


def test_lr_factors_by_module_prefix_and_shared_modules():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stage5 = nn.Linear(4, 4)  # registered first under a name outside the prefix
            self.backbone_3d = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), self.stage5)
            self.backbone_3d_extra = nn.Linear(4, 4)  # "backbone_3d" is a prefix of its name, not a module above it
            self.head = nn.Linear(4, 2)

    net = Net()
    optimizer = build_optimizer(net, lr=0.2, weight_decay=1e-4, lr_factors={"backbone_3d": 0.1})
    lr_of = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    assert len(lr_of) == len(list(net.parameters()))  # every parameter once
    slow = [net.backbone_3d[0].weight, net.backbone_3d[0].bias, net.backbone_3d[1].weight, net.stage5.weight,
            net.stage5.bias]
    fast = [net.backbone_3d_extra.weight, net.head.weight, net.head.bias]
    assert all(lr_of[id(p)] == pytest.approx(0.02) for p in slow)
    assert all(lr_of[id(p)] == pytest.approx(0.2) for p in fast)
    # the schedule scales every group from its own rate
    scheduler = build_lr_scheduler(optimizer, max_iter=10, warmup_iters=2, warmup_factor=0.5)
    assert sorted(g["lr"] for g in optimizer.param_groups)[0] == pytest.approx(0.01)
    assert sorted(g["lr"] for g in optimizer.param_groups)[-1] == pytest.approx(0.1)
    optimizer.step()
    scheduler.step()
    assert {round(g["lr"], 6) for g in optimizer.param_groups} == {0.015, 0.15}
    # the first prefix that matches wins; a dotted prefix names a submodule
    optimizer = build_optimizer(net, lr=1.0, lr_factors={"backbone_3d.1": 0.5, "backbone_3d": 0.1, "head": 2.0})
    lr_of = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    assert lr_of[id(net.backbone_3d[1].weight)] == 0.5 and lr_of[id(net.backbone_3d[0].weight)] == 0.1
    assert lr_of[id(net.head.weight)] == 2.0 and lr_of[id(net.backbone_3d_extra.weight)] == 1.0
    with pytest.raises(ValueError, match="lr factor of 'head' must be positive"):
        build_optimizer(net, lr=1.0, lr_factors={"head": 0.0})


def test_adamw_is_fused_and_steps_as_the_reference():
    # three steps of the fused AdamW against AdamW's reference loop, from the same weights and gradients (no
    # bias before the BatchNorm: its gradient is rounding noise, which Adam's normalisation would magnify)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 36, 2))
    reference = copy.deepcopy(model)
    fused = build_optimizer(model, name="adamw", lr=0.01, weight_decay=1e-2)
    assert fused.defaults["fused"] is True
    loop = torch.optim.AdamW([{"params": g["params"], "weight_decay": g["weight_decay"]}
                              for g in build_optimizer(reference, name="adamw", lr=0.01,
                                                       weight_decay=1e-2).param_groups], lr=0.01, betas=(0.9, 0.999),
                             foreach=False)
    x = torch.randn(4, 3, 8, 8)
    for net, optimizer in ((model, fused), (reference, loop)):
        for _ in range(3):
            optimizer.zero_grad()
            net(x).square().mean().backward()
            optimizer.step()
    for p, q in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_epoch_batches_are_sharded_and_resumable():
    full = list(EpochBatchSampler(11, batch_size=2, epoch=3, seed=5, world_size=2, rank=0))
    other = list(EpochBatchSampler(11, batch_size=2, epoch=3, seed=5, world_size=2, rank=1))
    assert len(full) == len(other) == 2  # 11 // (2 * 2)
    taken = [i for b in full + other for i in b]
    assert len(set(taken)) == 8 and set(taken) <= set(range(11))
    assert full == list(EpochBatchSampler(11, batch_size=2, epoch=3, seed=5, world_size=2, rank=0))
    assert full != list(EpochBatchSampler(11, batch_size=2, epoch=4, seed=5, world_size=2, rank=0))
    assert list(EpochBatchSampler(11, batch_size=2, epoch=3, seed=5, world_size=2, rank=0, start=1)) == full[1:]
    assert list(EpochBatchSampler(5, batch_size=2, epoch=0, shuffle=False)) == [[0, 1], [2, 3]]
    with pytest.raises(ValueError, match="no full batch of 4"):
        EpochBatchSampler(7, batch_size=4, epoch=0, world_size=2)


def test_train_loader_continues_from_its_state():
    dataset = RandomData()
    loader = TrainLoader(dataset, batch_size=4, seed=1)
    stream = iter(loader)
    seen = [next(stream)["index"].tolist() for _ in range(4)]  # epoch 0 (3 batches), then epoch 1
    state = loader.state_dict()
    assert state == {"epoch": 1, "batch": 1} and dataset.epochs == [0, 1]
    assert sorted(i for b in seen[:3] for i in b) == list(range(12))
    resumed = TrainLoader(RandomData(), batch_size=4, seed=1)
    resumed.load_state_dict(state)
    resumed_stream = iter(resumed)
    assert [next(resumed_stream)["index"].tolist() for _ in range(3)] == [next(stream)["index"].tolist()
                                                                          for _ in range(3)]


def test_seed_all_is_per_rank():
    seed_all(7, rank=0)
    a = (random.random(), np.random.rand(), torch.rand(1).item())
    seed_all(7, rank=0)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == a
    seed_all(7, rank=1)
    assert torch.rand(1).item() != a[2]


class Interrupt(Exception):
    pass


def draws_random_numbers(model, calls=None, interrupt_at=None):
    """An evaluation that uses the RNGs (the trainer must put their states back), and the ``interrupt_at``-th
    call of which (1-based) raises ``Interrupt``."""
    torch.rand(3), np.random.rand(), random.random()
    if calls is not None:
        calls.append(1)
        if len(calls) == interrupt_at:
            raise Interrupt
    return {"score": 1.0}


@pytest.mark.parametrize("num_workers", [0, 1])
def test_resume_is_bit_exact(tmp_path, num_workers):
    # 8 iterations, 3 batches an epoch; checkpoints after iterations 3 and 7, evaluations after 1, 3, 5, 7
    options = dict(checkpoint_period=4, eval_period=2, num_workers=num_workers)
    seed_all(3)
    straight = make_trainer(tmp_path / "straight", eval_fn=draws_random_numbers, **options)
    assert straight.resume_or_load(resume=True) == 0
    straight.train()

    seed_all(3)
    calls = []
    broken = make_trainer(tmp_path / "resumed", **options,
                          eval_fn=lambda model: draws_random_numbers(model, calls, interrupt_at=3))
    with pytest.raises(Interrupt):
        broken.train()  # dies at iteration 5: after the checkpoint of iteration 3 and the metrics of 4 and 5
    assert last_checkpoint(str(tmp_path / "resumed")).endswith("model_0000003.pth")
    seed_all(99)  # other RNG states and other initial weights: only the checkpoint can make them equal
    resumed = make_trainer(tmp_path / "resumed", model_seed=1, eval_fn=draws_random_numbers, **options)
    assert resumed.resume_or_load(resume=True) == 4
    resumed.train()

    a = load_checkpoint(str(tmp_path / "straight" / "model_final.pth"))
    b = load_checkpoint(str(tmp_path / "resumed" / "model_final.pth"))
    assert a["iteration"] == b["iteration"] == 7
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    for key, value in a["optimizer"]["state"].items():
        assert torch.equal(value["momentum_buffer"], b["optimizer"]["state"][key]["momentum_buffer"])
    drop_times = lambda rows: [{k: v for k, v in r.items() if "time" not in k} for r in rows]  # noqa: E731
    rows = drop_times(read_metrics(tmp_path / "resumed"))
    assert [r["iteration"] for r in rows] == [0, 1, 1, 2, 3, 3, 4, 5, 5, 6, 7, 7]
    assert rows == drop_times(read_metrics(tmp_path / "straight"))


def test_resume_without_checkpoint_or_without_resume_starts_at_zero(tmp_path):
    trainer = make_trainer(tmp_path, max_iter=2, checkpoint_period=1)
    trainer.train()
    assert make_trainer(tmp_path, max_iter=2).resume_or_load(resume=False) == 0
    assert make_trainer(tmp_path, max_iter=2).resume_or_load(resume=True) == 2
    (tmp_path / "last_checkpoint").write_text("model_0000042.pth")
    with pytest.raises(FileNotFoundError, match="model_0000042.pth"):
        make_trainer(tmp_path).resume_or_load(resume=True)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    trainer = make_trainer(tmp_path, max_iter=5, checkpoint_period=1, model=Net(nan_at_call=2))
    with pytest.raises(FloatingPointError, match=r"iteration 2: .*loss_l1=nan"):
        trainer.train()
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "metrics.json", "model_0000000.pth",
                                            "model_0000001.pth"]
    state = load_checkpoint(last_checkpoint(str(tmp_path)))
    assert state["iteration"] == 1
    assert all(torch.isfinite(v).all() for v in state["model"].values())


def test_crash_while_saving_keeps_previous_checkpoint(tmp_path, monkeypatch):
    real_save, calls = torch.save, []

    def save_then_die(obj, f, *args, **kwargs):  # f: the open temporary file
        calls.append(f)
        if len(calls) == 1:
            return real_save(obj, f, *args, **kwargs)
        f.write(b"PK\x03\x04 the first bytes of a zip")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", save_then_die)
    trainer = make_trainer(tmp_path, max_iter=6, checkpoint_period=2)
    with pytest.raises(OSError, match="disk full"):
        trainer.train()  # the second checkpoint, after iteration 3, fails half-way
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "metrics.json", "model_0000001.pth"]
    assert load_checkpoint(last_checkpoint(str(tmp_path)))["iteration"] == 1
    assert make_trainer(tmp_path, max_iter=6).resume_or_load(resume=True) == 2


def test_save_checkpoint_writes_the_file_then_last_checkpoint(tmp_path):
    path = save_checkpoint(str(tmp_path), "model_0000009", {"iteration": 9, "w": torch.arange(3)})
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000009.pth"
    assert last_checkpoint(str(tmp_path)) == path
    assert torch.equal(load_checkpoint(path)["w"], torch.arange(3))


def test_metrics_lines_and_eval_period(tmp_path):
    modes = []

    def eval_fn(model):
        modes.append(model.training)
        return {"frame_mAP": torch.tensor(50.0 + len(modes))}

    trainer = make_trainer(tmp_path, max_iter=7, log_period=3, eval_period=3, checkpoint_period=0, eval_fn=eval_fn,
                           schedule=dict(schedule="step", steps=(5,), gamma=0.1), tensorboard=True)
    trainer.train()
    rows = read_metrics(tmp_path)
    losses = [r for r in rows if "total_loss" in r]
    assert [r["iteration"] for r in losses] == [2, 5, 6]
    assert [r["lr"] for r in losses] == pytest.approx([0.1, 0.01, 0.01])
    assert set(losses[0]) == {"iteration", "total_loss", "loss_l1", "loss_mse", "lr", "time", "data_time"}
    for r in losses:
        assert r["total_loss"] == pytest.approx(r["loss_l1"] + r["loss_mse"], rel=1e-6)
        assert r["time"] >= r["data_time"] >= 0
    assert [(r["iteration"], r["frame_mAP"]) for r in rows if "frame_mAP" in r] == [(2, 51.0), (5, 52.0), (6, 53.0)]
    assert modes == [False] * 3 and trainer.model.training
    assert sorted(f for f in os.listdir(tmp_path) if f.endswith(".pth")) == ["model_final.pth"]
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(tmp_path))


def test_truncate_metrics(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text("".join(json.dumps({"iteration": i}) + "\n" for i in range(6)) + '{"iteration": 6, "lo')
    with pytest.warns(UserWarning, match="cut short"):
        truncate_metrics(str(path), before=4)
    assert [json.loads(line)["iteration"] for line in path.read_text().splitlines()] == [0, 1, 2, 3]
    path.write_text('{"iteration": 0}\nnot json\n{"iteration": 1}\n')
    with pytest.raises(ValueError, match="line 2: not JSON"):
        truncate_metrics(str(path), before=1)


def test_bad_losses_and_amp_on_cpu(tmp_path):
    class Vector(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(1))

        def forward(self, batch):
            return {"loss_vec": self.w * batch["x"].sum(0)}

    with pytest.warns(UserWarning, match="float32"):
        trainer = make_trainer(tmp_path, model=Vector(), amp_dtype="bfloat16")
    assert trainer.amp_dtype is None
    with pytest.raises(ValueError, match=r"loss 'loss_vec' must be a scalar tensor, got \(4,\)"):
        trainer.train()


def freeze_first_layer(model):
    """A model change: the first linear layer stops training; records how many forward calls came before it."""
    model.body[0].requires_grad_(False)
    model.frozen_after_calls = model.calls


def test_model_changes_run_once_before_their_iteration_and_again_on_resume(tmp_path):
    options = dict(max_iter=6, checkpoint_period=2, model_changes=[(3, freeze_first_layer)])
    seed_all(3)
    straight = make_trainer(tmp_path / "straight", **options)
    straight.train()
    assert straight.model.frozen_after_calls == 3  # iterations 0, 1 and 2 ran before it
    saved = {i: load_checkpoint(str(tmp_path / "straight" / f"model_000000{i}.pth"))["model"] for i in (1, 3)}
    final = load_checkpoint(str(tmp_path / "straight" / "model_final.pth"))["model"]
    for key in ("body.0.weight", "body.0.bias"):
        assert not torch.equal(saved[1][key], saved[3][key])  # trained in iteration 2
        assert torch.equal(saved[3][key], final[key])  # not in iterations 3, 4 and 5
    assert not torch.equal(saved[3]["body.3.weight"], final["body.3.weight"])  # the rest trains on

    # resumed after iteration 1 the change comes before iteration 3 as before; after iteration 3, at once
    for last, calls_before in ((1, 1), (3, 0)):
        out = tmp_path / f"resumed_{last}"
        out.mkdir()
        name = f"model_000000{last}.pth"
        (out / name).write_bytes((tmp_path / "straight" / name).read_bytes())
        (out / "last_checkpoint").write_text(name)
        seed_all(99)
        resumed = make_trainer(out, model_seed=1, **options)
        assert resumed.resume_or_load(resume=True) == last + 1
        resumed.train()
        assert resumed.model.frozen_after_calls == calls_before
        again = load_checkpoint(str(out / "model_final.pth"))["model"]
        for key, value in final.items():
            assert torch.equal(value, again[key]), (last, key)


def test_bad_model_changes(tmp_path):
    for bad in ([(-1, freeze_first_layer)], [(2, "freeze")], [(2,)]):
        with pytest.raises(ValueError, match=r"model_changes\[0\] must be \(iteration >= 0, callable\)"):
            make_trainer(tmp_path, model_changes=bad)


def test_the_thread_governor_is_stepped_before_every_iteration(tmp_path):
    class CountingGovernor:
        def __init__(self):
            self.steps, self.history = 0, [(0.0, 0.9, 1)]

        def step(self):
            self.steps += 1
            return 1 if self.steps == 3 else None  # a change is logged with the others' share

    governor = CountingGovernor()
    trainer = make_trainer(str(tmp_path), max_iter=5, thread_governor=governor)
    trainer.train()
    assert governor.steps == 5
