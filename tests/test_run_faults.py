"""Faults a user met around weights files, saving, resuming and the tools' errors: each ends in one line naming the
file and what was expected (exit 2 in the tools), with nothing lost. Small, seeded, CPU-only."""
import errno
import io
import logging
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from test_trainer import Net, make_trainer, read_metrics
from torch import nn

from s3d_det.checkpoint import load_converted, load_pretrained_3d, load_state_dict_file
from s3d_det.checkpoint.training import last_checkpoint, load_checkpoint, save_checkpoint
from s3d_det.config import ConfigError, load_config
from s3d_det.data import synthetic
from s3d_det.engine.defaults import build_model
from s3d_det.modeling import S3DG
from s3d_det.utils import io as s3d_io
from s3d_det.utils.errors import run_tool
from s3d_det.utils.io import atomic_write

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_CFG = os.path.join(ROOT, "configs/synthetic/s3dg_tiny.yaml")


def run_tool_process(tool, *args, **env):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ROOT, **env}  # this tree's s3d_det
    return subprocess.run([sys.executable, f"tools/{tool}", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


class _Code:
    def __reduce__(self):
        return (os.getcwd, ())


@pytest.fixture
def bad_weights(tmp_path):
    """Files that are not weights: text, empty, a truncated torch zip, a truncated legacy torch file, and a torch
    file whose pickle names a global that is code."""
    good = io.BytesIO()
    torch.save({"model": {"w": torch.ones(64)}}, good)
    legacy = io.BytesIO()
    torch.save({"w": torch.ones(64)}, legacy, _use_new_zipfile_serialization=False)
    files = {"text": b"this is a README, not weights\n", "empty": b"", "truncated": good.getvalue()[:300],
             "truncated_legacy": legacy.getvalue()[:200]}
    paths = {}
    for name, data in files.items():
        paths[name] = tmp_path / f"{name}.pth"
        paths[name].write_bytes(data)
    paths["code"] = tmp_path / "code.pth"
    torch.save({"model": {"w": _Code()}}, str(paths["code"]))
    return paths


def _one_line_naming(message, path):
    assert "\n" not in message.strip() and str(path) in message
    assert "weights_only" not in message  # never the advice to load it unsafely
    assert "expected" in message


@pytest.mark.parametrize("loader", ["MODEL.WEIGHTS", "convert input", "MODEL.WEIGHTS_3D"])
def test_weights_files_that_are_not_weights_are_one_line_errors(bad_weights, loader):
    read = {"MODEL.WEIGHTS": lambda p: load_checkpoint(p, "MODEL.WEIGHTS"), "convert input": load_state_dict_file,
            "MODEL.WEIGHTS_3D": load_converted}[loader]
    for name, path in bad_weights.items():
        with pytest.raises(ValueError) as info:
            read(str(path))
        _one_line_naming(str(info.value), path)
        if name == "code":
            assert "refusing to load" in str(info.value) and "getcwd" in str(info.value)
        elif name == "empty":
            assert "empty" in str(info.value)
        elif name.startswith("truncated"):
            assert "truncated" in str(info.value) or "not a" in str(info.value)


@pytest.mark.slow
def test_convert_tool_refuses_a_file_with_code_in_one_line(bad_weights, tmp_path):
    out = tmp_path / "converted.pth"
    for path in bad_weights.values():
        proc = run_tool_process("convert_weights.py", "torchvision_s3d", path, out)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and str(path) in lines[0], proc.stderr
        assert "weights_only" not in proc.stderr and not out.exists()


def test_weights_of_another_size_name_the_keys_and_both_shapes(tmp_path):
    cfg = load_config(TINY_CFG)
    other = build_model(cfg, num_classes=3)  # a checkpoint of 3 actions, loaded for 6
    path = tmp_path / "three_actions.pth"
    torch.save({"model": other.state_dict()}, str(path))
    with pytest.raises(ValueError) as info:
        build_model(load_config(TINY_CFG, ["MODEL.WEIGHTS", str(path)]), num_classes=6)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    assert "roi_head.box_predictor.cls_score.weight" in message
    n = other.roi_head.box_predictor.cls_score.weight.shape[1]
    assert f"(4, {n})" in message and f"(7, {n})" in message  # 3 actions + background, 6 + background

    narrow = S3DG(variant="s3dg", width=0.25)
    wide_state = {f"backbone.{k}": v for k, v in S3DG(variant="s3dg", width=0.5).state_dict().items()}
    converted = tmp_path / "wide.pth"
    torch.save({"state_dict": wide_state, "meta": {}}, str(converted))
    with pytest.raises(ValueError) as info:
        load_pretrained_3d(narrow, str(converted))
    assert "\n" not in str(info.value) and str(converted) in str(info.value)
    assert str(info.value).count(" in the file, ") == 3  # the first three mismatched keys, both shapes each


# ---------------------------------------------------------------------------------------------------------------
# Config and the tools' exit codes
# ---------------------------------------------------------------------------------------------------------------
def test_broken_yaml_is_a_one_line_config_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("SOLVER:\n  BASE_LR: 0.1\n  STEPS: [1, 2\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml, line 4, column 1: not valid YAML"):
        load_config(str(bad))
    leaf = tmp_path / "leaf.yaml"
    leaf.write_text("_BASE_: bad.yaml\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml, line 4.*the _BASE_ of .*leaf\.yaml"):
        load_config(str(leaf))
    listing = tmp_path / "list.yaml"
    listing.write_text("- SOLVER\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(str(listing))
    with pytest.raises(ConfigError, match=r"SOLVER.MAX_ITER must be a int .* got a str: abc"):
        load_config(TINY_CFG, ["SOLVER.MAX_ITER", "abc"])


@pytest.mark.slow
@pytest.mark.parametrize("opts", [["--config-file", "{bad}"], ["--config-file", TINY_CFG, "SOLVER.NOPE", "1"],
                                  ["--config-file", TINY_CFG, "SOLVER.MAX_ITER", "[1]"]])
def test_train_tool_turns_config_errors_into_exit_2(tmp_path, opts):
    bad = tmp_path / "bad.yaml"
    bad.write_text("MODEL: {WIDTH: \n")
    args = [a.format(bad=bad) for a in opts]
    proc = run_tool_process("train_det.py", *args, "OUTPUT_DIR", tmp_path / "out", S3D_DET_DATASETS=str(tmp_path))
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and proc.stderr.strip().startswith("error: ")
    assert len(proc.stderr.strip().splitlines()) == 1


def test_run_tool_reports_input_errors_in_one_line(capsys):
    def broken():
        raise ValueError("a.pth:\n  not\tweights")

    assert run_tool(broken) == 2
    assert capsys.readouterr().err == "error: a.pth: not weights\n"
    assert run_tool(lambda: None) == 0 and run_tool(lambda: 3) == 3
    with pytest.raises(ZeroDivisionError):  # a bug keeps its traceback
        run_tool(lambda: 1 / 0)


# ---------------------------------------------------------------------------------------------------------------
# Disk full
# ---------------------------------------------------------------------------------------------------------------
def test_a_checkpoint_on_a_full_disk_says_so_and_keeps_the_previous_one(tmp_path, monkeypatch):
    save_checkpoint(str(tmp_path), "model_0000001", {"iteration": 1, "w": torch.ones(3)})
    real_save = torch.save

    def full(obj, f, *args, **kwargs):
        real_save(obj, io.BytesIO())
        f.write(b"PK\x03\x04")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(OSError, match="no space left") as info:
        save_checkpoint(str(tmp_path), "model_0000003", {"iteration": 3, "w": torch.zeros(3)})
    assert str(tmp_path / "model_0000003.pth") in str(info.value)
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_0000001.pth"]  # no temporary left
    assert load_checkpoint(last_checkpoint(str(tmp_path)))["iteration"] == 1


def test_atomic_write_on_a_full_disk_names_the_path(tmp_path):
    target = tmp_path / "metrics.json"
    target.write_text("old\n")
    with pytest.raises(OSError, match=r"no space left on the device to write .*metrics\.json"):
        with atomic_write(str(target), ".json"):
            raise OSError(errno.ENOSPC, "No space left on device")
    assert target.read_text() == "old\n" and os.listdir(tmp_path) == ["metrics.json"]


def _tool_main(name):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, f"tools/{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def test_a_video_that_does_not_read_back_is_an_error_and_the_old_one_survives(tmp_path, monkeypatch, capsys):
    from s3d_det import vis
    from s3d_det.evaluation.detections import Detections, save_detections

    h, w, n = 48, 64, 6
    source = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(source), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (w, h))
    for _ in range(n):
        writer.write(np.full((h, w, 3), 100, np.uint8))
    writer.release()
    dets = tmp_path / "dets.npz"
    save_detections(str(dets), Detections(videos=["a/clip"], frame_dets=np.array([[0, 1, 0, 0.9, 5, 5, 30, 30]])))
    output = tmp_path / "out.mp4"
    main = _tool_main("visualize_video")
    assert main(["--input", str(source), "--detections", str(dets), "--output", str(output), "--quiet"]) == 0
    good = output.read_bytes()

    class FullDiskWriter:  # what OpenCV does on a full disk: opens, accepts the frames, writes a cut-short file
        def __init__(self, path, *args):
            self.path = path
            open(path, "wb").close()

        def isOpened(self):
            return True

        def write(self, image):
            pass

        def release(self):
            with open(self.path, "wb") as f:
                f.write(good[:len(good) // 3])

    monkeypatch.setattr(vis.cv2, "VideoWriter", FullDiskWriter)
    capsys.readouterr()
    assert main(["--input", str(source), "--detections", str(dets), "--output", str(output), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(output) in err and len(err.strip().splitlines()) == 1
    assert output.read_bytes() == good
    assert sorted(os.listdir(tmp_path)) == ["clip.avi", "dets.npz", "out.mp4"]  # no temporary left


# ---------------------------------------------------------------------------------------------------------------
# Training: non-finite weights, stale temporaries, --resume, metrics after a resume
# ---------------------------------------------------------------------------------------------------------------
class NetWithSpare(Net):
    """Net with a parameter the loss does not use: it can turn NaN while every loss stays finite."""

    def __init__(self):
        super().__init__()
        self.spare = nn.Parameter(torch.zeros(2))


def _poison(model):
    model.spare.data.fill_(float("nan"))


def test_non_finite_weights_are_never_saved(tmp_path):
    trainer = make_trainer(tmp_path, max_iter=8, checkpoint_period=2, model=NetWithSpare(),
                           model_changes=[(2, _poison)])
    with pytest.raises(FloatingPointError) as info:
        trainer.train()
    message = str(info.value)
    assert "iteration 3" in message and "spare (nan)" in message and "model_0000001.pth" in message
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "metrics.json", "model_0000001.pth"]
    assert load_checkpoint(last_checkpoint(str(tmp_path)))["iteration"] == 1
    assert make_trainer(tmp_path, max_iter=8, model=NetWithSpare()).resume_or_load(resume=True) == 2


def test_stale_temporaries_of_our_pattern_are_removed_on_start_and_nothing_else(tmp_path):
    ours = [".tmp_k2j4l_9a.pth", ".tmp_999999999_abcdefgh.pth", ".tmp_999999999_abcdefgh"]
    alive = f".tmp_{os.getpid()}_abcdefgh.pth"  # a save in progress of a running process
    theirs = [".tmp_notes.txt", "tmp_k2j4l_9a.pth", "model.tmp_1.pth", ".tmp_abc.pth", ".tmp_k2j4l_9a.pth.bak"]
    for name in ours + [alive] + theirs:
        (tmp_path / name).write_bytes(b"x" * 10)
    (tmp_path / ".tmp_12345678.pth").mkdir()  # a folder is never ours
    trainer = make_trainer(tmp_path, max_iter=2)
    assert trainer.resume_or_load(resume=True) == 0
    assert sorted(os.listdir(tmp_path)) == sorted(theirs + [alive, ".tmp_12345678.pth"])
    assert s3d_io.remove_stale_temporaries(str(tmp_path)) == []


def test_resume_without_a_checkpoint_warns_and_resuming_is_logged(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="s3d_det.engine.trainer"):
        assert make_trainer(tmp_path, max_iter=2).resume_or_load(resume=True) == 0
    warned = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warned) == 1 and "no checkpoint" in warned[0].getMessage() and str(tmp_path) in warned[0].getMessage()
    caplog.clear()
    make_trainer(tmp_path, max_iter=2, checkpoint_period=1).train()
    with caplog.at_level(logging.INFO, logger="s3d_det.engine.trainer"):
        trainer = make_trainer(tmp_path, max_iter=4)
        assert trainer.resume_or_load(resume=True) == 2
    assert trainer.resumed_from == str(tmp_path / "model_final.pth")
    assert any("resuming from" in r.getMessage() and r.levelno >= logging.INFO for r in caplog.records)


class Interrupt(Exception):
    pass


def _interrupt(model):
    raise Interrupt


def test_metrics_after_a_resume_match_a_straight_run(tmp_path):
    # log every 3 iterations, checkpoint every 2: the resumed run starts inside a logging window (after iteration 3,
    # whose numbers the straight run averages into the line of iteration 5)
    options = dict(max_iter=8, log_period=3, checkpoint_period=2)
    torch.manual_seed(0), np.random.seed(0)
    import random
    random.seed(0)
    make_trainer(tmp_path / "straight", **options).train()
    torch.manual_seed(0), np.random.seed(0)
    random.seed(0)
    broken = make_trainer(tmp_path / "resumed", **options, model_changes=[(5, _interrupt)])
    with pytest.raises(Interrupt):
        broken.train()  # stops before iteration 5: last checkpoint after iteration 3, metrics line of iteration 2
    resumed = make_trainer(tmp_path / "resumed", model_seed=1, **options)
    assert resumed.resume_or_load(resume=True) == 4
    resumed.train()
    a = load_checkpoint(str(tmp_path / "straight" / "model_final.pth"))
    b = load_checkpoint(str(tmp_path / "resumed" / "model_final.pth"))
    assert all(torch.equal(v, b["model"][k]) for k, v in a["model"].items())
    drop_times = lambda rows: [{k: v for k, v in r.items() if "time" not in k} for r in rows]  # noqa: E731
    straight = drop_times(read_metrics(tmp_path / "straight"))
    assert [r["iteration"] for r in straight] == [2, 5, 7]
    assert drop_times(read_metrics(tmp_path / "resumed")) == straight


# ---------------------------------------------------------------------------------------------------------------
# The synthetic set: never overwrite what a user made
# ---------------------------------------------------------------------------------------------------------------
TINY = dict(num_videos=6, seed=3, size=(64, 80), min_frames=8, max_frames=10)


def _files(root):
    out = {}
    for folder, _, names in os.walk(root):
        for name in names:
            with open(os.path.join(folder, name), "rb") as f:
                out[os.path.relpath(os.path.join(folder, name), root)] = f.read()
    return out


def test_ensure_synthetic_never_replaces_a_users_set(tmp_path, caplog, monkeypatch):
    root = str(tmp_path / "synthetic")
    synthetic.generate_synthetic(root, progress=False, **{**TINY, "seed": 9})  # the user's own arguments
    before = _files(root)

    def must_not_run(*args, **kwargs):
        raise AssertionError("overwrote the user's set")

    monkeypatch.setattr(synthetic, "generate_synthetic", must_not_run)
    with caplog.at_level(logging.WARNING):
        path = synthetic.ensure_synthetic(root, progress=False, **TINY)
    assert path == os.path.join(root, "synthetic-GT.pkl") and _files(root) == before
    assert any("seed 9" in r.getMessage() and "seed 3" in r.getMessage() for r in caplog.records)

    os.remove(os.path.join(root, "meta.json"))  # a set in the layout, not ours (or edited): used as it is
    before = _files(root)
    assert synthetic.ensure_synthetic(root, progress=False, **TINY) == path and _files(root) == before

    os.remove(os.path.join(root, "Frames", "move_left", "move_left_0000", "00002.jpg"))  # incomplete, not ours
    before = _files(root)
    with pytest.raises(ValueError, match=r"synthetic holds .*00001\.\.000\d\d.*refusing to overwrite"):
        synthetic.ensure_synthetic(root, progress=False, **TINY)
    assert _files(root) == before
