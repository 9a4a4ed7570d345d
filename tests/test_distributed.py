"""Multi-process training on the CPU with gloo: a 2-process DDP run matches a 1-process run on the same
samples, and launch joins a job described by torchrun's environment variables."""
import json
import os
import socket

import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F
from torch.utils.data import Dataset

from s3d_det.engine import (
    Trainer,
    all_gather,
    build_lr_scheduler,
    build_optimizer,
    get_rank,
    get_world_size,
    launch,
    load_checkpoint,
)


class Points(Dataset):
    def __init__(self, n=16):
        g = torch.Generator().manual_seed(0)
        self.x, self.y = torch.randn(n, 4, generator=g), torch.randn(n, 1, generator=g)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"x": self.x[i], "y": self.y[i]}


class Regressor(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))

    def forward(self, batch):
        return {"loss_mse": F.mse_loss(self.body(batch["x"]), batch["y"])}


def gathered_ranks(model):
    return {"ranks": float(sum(rank * 10 ** rank for rank in all_gather(get_rank()))), "world": get_world_size()}


def freeze_first_layer(model):
    model.body[0].requires_grad_(False)
    model.at_freeze = {k: v.clone() for k, v in model.body[0].state_dict().items()}


def train(output_dir, global_batch, max_iter=2, model_changes=()):
    """``max_iter`` iterations of batch ``global_batch`` split over the processes (the job's, or this one alone)."""
    torch.manual_seed(0)
    model = Regressor()
    optimizer = build_optimizer(model, lr=0.1, momentum=0.9, weight_decay=1e-2)
    scheduler = build_lr_scheduler(optimizer, max_iter=max_iter, warmup_iters=2, warmup_factor=0.5)
    trainer = Trainer(model, dataset=Points(), batch_size=global_batch // get_world_size(), optimizer=optimizer,
                      scheduler=scheduler, max_iter=max_iter, output_dir=output_dir, checkpoint_period=0,
                      log_period=1, eval_fn=gathered_ranks, tensorboard=False, model_changes=model_changes)
    trainer.train()
    return model


def record_job(path):
    with open(path, "w") as f:
        json.dump({"initialized": dist.is_initialized(), "world": get_world_size(), "rank": get_rank()}, f)


def read_metrics(output_dir):
    with open(os.path.join(output_dir, "metrics.json")) as f:
        return [json.loads(line) for line in f]


def test_two_gloo_processes_match_one(tmp_path):
    launch(train, 2, args=(str(tmp_path / "ddp"), 8), backend="gloo")
    train(str(tmp_path / "single"), 8)
    ddp = load_checkpoint(str(tmp_path / "ddp" / "model_final.pth"))
    single = load_checkpoint(str(tmp_path / "single" / "model_final.pth"))
    assert len(ddp["rng"]) == 2 and len(single["rng"]) == 1
    torch.manual_seed(0)
    initial = Regressor().state_dict()
    for key, value in single["model"].items():
        assert not torch.equal(value, initial[key])
        torch.testing.assert_close(ddp["model"][key], value, rtol=0, atol=1e-6)
    ddp_rows, single_rows = read_metrics(tmp_path / "ddp"), read_metrics(tmp_path / "single")
    assert [r["iteration"] for r in ddp_rows] == [0, 1, 1]
    for a, b in zip(ddp_rows[:2], single_rows[:2]):
        assert abs(a["total_loss"] - b["total_loss"]) < 1e-6
    assert (ddp_rows[2]["ranks"], ddp_rows[2]["world"]) == (10.0, 2)  # 0 * 1 + 1 * 10, gathered in rank order
    assert (single_rows[2]["ranks"], single_rows[2]["world"]) == (0.0, 1)


def test_a_layer_frozen_mid_training_under_ddp_matches_one_process(tmp_path):
    # DDP's reducer expects a gradient for every parameter it was built with: the trainer must rebuild it
    changes = [(1, freeze_first_layer)]
    launch(train, 2, args=(str(tmp_path / "ddp"), 8, 3, changes), backend="gloo")
    train(str(tmp_path / "single"), 8, 3, changes)
    ddp = load_checkpoint(str(tmp_path / "ddp" / "model_final.pth"))["model"]
    single = load_checkpoint(str(tmp_path / "single" / "model_final.pth"))["model"]
    model = train(str(tmp_path / "again"), 8, 3, changes)
    assert set(model.at_freeze) == {"weight", "bias"}
    for key, value in model.at_freeze.items():
        assert torch.equal(single["body.0." + key], value)  # trained in iteration 0 only
    torch.manual_seed(0)
    initial = Regressor().state_dict()
    for key, value in single.items():
        assert not torch.equal(value, initial[key])
        torch.testing.assert_close(ddp[key], value, rtol=0, atol=1e-6)


def test_launch_joins_a_torchrun_job(tmp_path, monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for name, value in dict(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1",
                            MASTER_PORT=str(port)).items():
        monkeypatch.setenv(name, value)
    launch(record_job, 4, args=(str(tmp_path / "job.json"),), backend="gloo")  # 4 is ignored under torchrun
    with open(tmp_path / "job.json") as f:
        assert json.load(f) == {"initialized": True, "world": 1, "rank": 0}
    assert not dist.is_initialized()
