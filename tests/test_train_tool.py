"""tools/train_det.py and tools/eval_jhmdb.py (model mode) run as a user runs them, shortened: the quick-start
config on a 6-video synthetic set at 64-pixel frames for a few iterations."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from s3d_det.checkpoint.training import last_checkpoint, load_checkpoint
from s3d_det.data.annotations import load_gt
from s3d_det.evaluation.detections import check_detections, load_detections

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = "configs/synthetic/s3dg_tiny.yaml"
# The quick start, shrunk: 6 videos (4 train, 2 test), 64-pixel frames, 4-frame clips, 4 iterations (the 2D
# backbone frozen from the third); no pretraining of the 3D network (tests/test_train_cls.py runs one).
SMALL = ["MODEL.BACKBONE_3D.PRETRAIN", '""',
         "DATASETS.SYNTHETIC_NUM_VIDEOS", "6", "DATASETS.SYNTHETIC_TEST_VIDEOS", "2",
         "INPUT.SHORT_SIDE_TRAIN", "[64]", "INPUT.SHORT_SIDE_TEST", "64",
         "INPUT.CLIP_LENGTH", "4", "SOLVER.BATCH_SIZE", "2", "SOLVER.MAX_ITER", "4", "SOLVER.WARMUP_ITERS", "2",
         "SOLVER.CHECKPOINT_PERIOD", "2", "SOLVER.FREEZE_2D_AT", "2", "DATALOADER.NUM_WORKERS", "0",
         "TEST.BATCH_SIZE", "16"]


def run_tool(tool, *args, datasets, timeout=600):
    env = {**os.environ, "S3D_DET_DATASETS": str(datasets), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, f"tools/{tool}", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One shortened quick-start run (the synthetic set is made by the tool itself)."""
    datasets = tmp_path_factory.mktemp("datasets")
    out = tmp_path_factory.mktemp("train") / "out"
    proc = run_tool("train_det.py", "--config-file", CONFIG, *SMALL, "OUTPUT_DIR", out, datasets=datasets)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return datasets, out, proc


def test_quick_start_trains_evaluates_and_writes_its_outputs(trained):
    datasets, out, proc = trained
    gt = load_gt(str(datasets / "synthetic" / "synthetic-GT.pkl"))  # made by the tool
    assert len(gt["train_videos"][0]) == 4 and len(gt["test_videos"][0]) == 2
    assert {"config.yaml", "metrics.json", "model_0000001.pth", "model_final.pth", "last_checkpoint",
            "detections.npz", "frame_map.json"} <= set(os.listdir(out))
    assert last_checkpoint(str(out)) == str(out / "model_final.pth")
    rows = [json.loads(line) for line in open(out / "metrics.json")]
    train_rows = [r for r in rows if "total_loss" in r]
    assert [r["iteration"] for r in train_rows] == [3]  # a line every 20 iterations and after the last
    assert all(np.isfinite(r["total_loss"]) and r["total_loss"] > 0 for r in train_rows)
    assert {"loss_objectness", "loss_rpn_box_reg", "loss_cls", "loss_box_reg"} <= set(train_rows[0])
    assert "frame_mAP" in rows[-1]

    final = load_checkpoint(str(out / "model_final.pth"))
    assert final["iteration"] == 3
    first = load_checkpoint(str(out / "model_0000001.pth"))
    changed = [k for k, v in final["model"].items() if v.is_floating_point() and not torch.equal(v, first["model"][k])]
    assert any(k.startswith("backbone_3d.") for k in changed) and any(k.startswith("rpn.") for k in changed)
    # the recipe's SOLVER.FREEZE_2D_AT (2 here): the 2D backbone, statistics included, as after iteration 1
    assert not [k for k in changed if k.startswith("backbone_2d.")]
    assert any(k.startswith("backbone_2d.") and v.is_floating_point() for k, v in final["model"].items())

    result = json.load(open(out / "frame_map.json"))
    assert set(result) == {"protocol", "iou", "frame_mAP", "per_class_AP", "video_mAP"}
    assert result["protocol"] == "act" and list(result["per_class_AP"]) == list(gt["labels"])
    assert 0.0 <= result["frame_mAP"] <= 100.0
    assert f"frame-mAP (act, IoU 0.5): {result['frame_mAP']:.2f}" in proc.stdout

    dets = load_detections(str(out / "detections.npz"))
    assert dets.videos == gt["test_videos"][0]
    check_detections(dets, gt=gt)
    # every detection is on a frame of its video, in original pixels (320 x 240), at most 10 a frame
    assert len(dets.frame_dets) > 0
    assert dets.frame_dets[:, 4:].min() >= 0 and dets.frame_dets[:, [4, 6]].max() <= 320
    _, per_frame = np.unique(dets.frame_dets[:, :2], axis=0, return_counts=True)
    assert per_frame.max() <= 10


def test_quick_start_shows_its_detections_on_a_test_video(trained):
    import cv2

    datasets, out, proc = trained
    video = load_detections(str(out / "detections.npz")).videos[0]
    base = out / "visualization" / video.replace("/", "_")
    assert f"{base}.mp4" in proc.stdout and f"{base}_sheet.png" in proc.stdout
    cap = cv2.VideoCapture(f"{base}.mp4")
    count = 0
    while cap.read()[0]:
        count += 1
    gt = load_gt(str(datasets / "synthetic" / "synthetic-GT.pkl"))
    assert count == gt["nframes"][video]
    assert (cap.get(cv2.CAP_PROP_FRAME_HEIGHT), cap.get(cv2.CAP_PROP_FRAME_WIDTH)) == gt["resolution"][video]
    assert cv2.imread(f"{base}_sheet.png") is not None


@pytest.mark.slow
def test_eval_tool_video_inference_modes(trained, tmp_path):
    """--inference per_keyframe gives the training's evaluation's detections; shared gives valid ones of every
    test frame."""
    datasets, out, _ = trained
    reference = load_detections(str(out / "detections.npz"))
    gt = load_gt(str(datasets / "synthetic" / "synthetic-GT.pkl"))
    for mode in ("per_keyframe", "shared"):
        proc = run_tool("eval_jhmdb.py", "--config-file", CONFIG, "--weights", out / "model_final.pth",
                        "--inference", mode, "--out", tmp_path / mode, *SMALL, datasets=datasets)
        assert proc.returncode == 0, proc.stderr[-3000:]
        dets = load_detections(str(tmp_path / mode / "detections_split1.npz"))
        check_detections(dets, gt=gt)
        assert dets.videos == reference.videos
        frames = {(v, f) for v, f in dets.frame_dets[:, :2].astype(int).tolist()}
        assert frames == {(v, f) for v, f in reference.frame_dets[:, :2].astype(int).tolist()}
        if mode == "per_keyframe":
            np.testing.assert_allclose(dets.frame_dets, reference.frame_dets, rtol=0, atol=1e-4)


@pytest.mark.slow
def test_eval_tool_model_mode_reproduces_the_training_evaluation(trained, tmp_path):
    datasets, out, _ = trained
    proc = run_tool("eval_jhmdb.py", "--config-file", CONFIG, "--weights", out / "model_final.pth", "--split", "1",
                    "--out", tmp_path, "--json", tmp_path / "result.json", *SMALL, datasets=datasets)
    assert proc.returncode == 0, proc.stderr[-3000:]
    expected = json.load(open(out / "frame_map.json"))
    result = json.load(open(tmp_path / "result.json"))
    assert result["frame_mAP"] == pytest.approx(expected["frame_mAP"], abs=1e-9)
    assert result["per_class_AP"] == pytest.approx(expected["per_class_AP"], abs=1e-9)
    assert set(result["video_mAP"]) == {"0.2", "0.5", "0.75", "0.5:0.95"}
    assert result["splits"]["1"]["frame_mAP"] == result["frame_mAP"]
    a, b = load_detections(str(out / "detections.npz")), load_detections(str(tmp_path / "detections_split1.npz"))
    assert a.videos == b.videos
    np.testing.assert_allclose(a.frame_dets, b.frame_dets, rtol=0, atol=1e-4)
    assert f"frame-mAP@0.5: {expected['frame_mAP']:.2f}" in proc.stdout and "video-mAP" in proc.stdout


@pytest.mark.slow
def test_eval_tool_runs_a_full_detector_on_oracle_boxes(trained, tmp_path):
    """MODEL.PROPOSALS gt at evaluation: the trained weights without their 2D part, on the GT boxes only."""
    datasets, out, _ = trained
    proc = run_tool("eval_jhmdb.py", "--config-file", CONFIG, "--weights", out / "model_final.pth", "--out", tmp_path,
                    *SMALL, "MODEL.PROPOSALS", "gt", datasets=datasets)
    assert proc.returncode == 0, proc.stderr[-3000:]
    dets = load_detections(str(tmp_path / "detections_split1.npz"))
    gt = load_gt(str(datasets / "synthetic" / "synthetic-GT.pkl"))
    annotated = {(i, int(row[0])) for i, v in enumerate(dets.videos) for tubes in gt["gttubes"][v].values()
                 for tube in tubes for row in tube}
    frames = {(int(v), int(f)) for v, f in dets.frame_dets[:, :2]}
    assert frames and frames <= annotated


@pytest.mark.slow
def test_eval_tool_model_mode_bad_input(trained, tmp_path):
    datasets, out, _ = trained
    proc = run_tool("eval_jhmdb.py", "--config-file", CONFIG, "--weights", tmp_path / "missing.pth", *SMALL,
                    datasets=datasets)
    assert proc.returncode == 2 and "missing.pth" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_tool("eval_jhmdb.py", "--config-file", CONFIG, "--weights", out / "model_final.pth",
                    "--split", "2", *SMALL, datasets=datasets)
    assert proc.returncode == 2 and "split 2 does not exist" in proc.stderr
    proc = run_tool("eval_jhmdb.py", "--config-file", CONFIG, "--weights", out / "model_final.pth", *SMALL,
                    "SOLVER.NO_SUCH_KEY", "1", datasets=datasets)
    assert proc.returncode == 2 and "SOLVER.NO_SUCH_KEY" in proc.stderr
    proc = run_tool("eval_jhmdb.py", "--config-file", CONFIG, "--weights", out / "model_final.pth", "--split", "all",
                    datasets=datasets)
    assert proc.returncode == 2 and "{split}" in proc.stderr


@pytest.mark.slow
def test_resume_through_the_tool_matches_a_straight_run(trained, tmp_path):
    """A run killed after its checkpoint at iteration 2 (here: a folder holding only that checkpoint) and
    resumed ends with the straight run's weights and optimizer state."""
    datasets, straight, _ = trained
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copy(straight / "model_0000001.pth", resumed / "model_0000001.pth")
    (resumed / "last_checkpoint").write_text("model_0000001.pth")
    proc = run_tool("train_det.py", "--config-file", CONFIG, "--resume", *SMALL, "OUTPUT_DIR", resumed,
                    datasets=datasets)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"resuming from {resumed / 'model_0000001.pth'} at iteration 2" in proc.stdout  # said where it resumed
    rows = [json.loads(line) for line in open(resumed / "metrics.json")]
    assert [r["iteration"] for r in rows if "total_loss" in r] == [3]  # it ran iterations 2 and 3 only
    a = load_checkpoint(str(straight / "model_final.pth"))
    b = load_checkpoint(str(resumed / "model_final.pth"))
    assert a["iteration"] == b["iteration"] == 3
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    assert a["optimizer"]["state"].keys() == b["optimizer"]["state"].keys()
    for key, state in a["optimizer"]["state"].items():  # AdamW: step, exp_avg, exp_avg_sq
        for name, value in state.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(b["optimizer"]["state"][key][name])), (key, name)


@pytest.mark.slow
def test_two_gloo_processes_train_the_detector(trained, tmp_path):
    """--num-gpus 2 on the CPU: two gloo processes, each half the batch, one checkpoint holding both RNG states."""
    datasets, _, _ = trained
    out = tmp_path / "ddp"
    proc = run_tool("train_det.py", "--config-file", CONFIG, "--num-gpus", "2", *SMALL, "SOLVER.MAX_ITER", "2",
                    "OUTPUT_DIR", out, datasets=datasets)
    assert proc.returncode == 0, proc.stderr[-3000:]
    final = load_checkpoint(str(out / "model_final.pth"))
    assert final["iteration"] == 1 and len(final["rng"]) == 2
    rows = [json.loads(line) for line in open(out / "metrics.json")]
    assert [r["iteration"] for r in rows if "total_loss" in r] == [1]
    assert os.path.isfile(out / "frame_map.json")


@pytest.mark.slow
def test_bad_config_values_name_the_key(trained, tmp_path):
    datasets, _, _ = trained
    proc = run_tool("train_det.py", "--config-file", CONFIG, *SMALL, "OUTPUT_DIR", tmp_path,
                    "INPUT.HFLIP_SWAP", "[['move_left', 'fly']]", datasets=datasets)
    assert proc.returncode == 2 and "INPUT.HFLIP_SWAP" in proc.stderr and "fly" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = run_tool("train_det.py", "--config-file", CONFIG, *SMALL, "OUTPUT_DIR", tmp_path,
                    "SOLVER.OPTIMIZER", "lbfgs", datasets=datasets)
    assert proc.returncode == 2 and "lbfgs" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_tool("train_det.py", "--config-file", CONFIG, *SMALL, "OUTPUT_DIR", tmp_path,
                    "DATASETS.SYNTHETIC_TEST_VIDEOS", "6", datasets=tmp_path / "fresh")
    assert proc.returncode == 2 and "DATASETS.SYNTHETIC_TEST_VIDEOS" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "fresh").exists()  # refused before anything was written
    proc = run_tool("train_det.py", "--config-file", CONFIG, *SMALL, "OUTPUT_DIR", tmp_path,
                    "DATALOADER.BACKGROUND_FRAMES", "True", "MODEL.PROPOSALS", "gt", "DATALOADER.IDLE_HOLD", "0",
                    datasets=datasets)
    assert proc.returncode == 2 and "DATALOADER.BACKGROUND_FRAMES" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_tool("train_det.py", "--config-file", CONFIG, *SMALL, "OUTPUT_DIR", tmp_path,
                    "DATALOADER.IDLE_HOLD", "-2", datasets=datasets)
    assert proc.returncode == 2 and "DATALOADER.IDLE_HOLD" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_tool("train_det.py", "--config-file", CONFIG, *SMALL, "OUTPUT_DIR", tmp_path,
                    "DATALOADER.IDLE_HOLD", "0", "DATALOADER.IDLE_MARGIN", "8", datasets=datasets)
    assert proc.returncode == 2 and "DATALOADER.IDLE_MARGIN" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_tool("train_det.py", "--config-file", CONFIG, *SMALL, "OUTPUT_DIR", tmp_path,
                    "DATALOADER.IDLE_HOLD", "0", "DATALOADER.IDLE_KEYFRAMES", "True", datasets=datasets)
    assert proc.returncode == 2 and "DATALOADER.IDLE_KEYFRAMES" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_tool("train_det.py", "--config-file", CONFIG, *SMALL, "OUTPUT_DIR", tmp_path,
                    "TEST.SMOOTH_FRAMES", "-1", datasets=datasets)
    assert proc.returncode == 2 and "TEST.SMOOTH_FRAMES" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_tool("train_det.py", "--config-file", CONFIG, *SMALL, "OUTPUT_DIR", tmp_path,
                    "INPUT.HUE", "0.7", datasets=datasets)
    assert proc.returncode == 2 and "INPUT.HUE" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_eval_tool_model_mode_all_splits(trained, tmp_path):
    """--split all runs each split's own model ({split} in --weights); the synthetic set has one split."""
    datasets, out, _ = trained
    (tmp_path / "split1").mkdir()
    shutil.copy(out / "model_final.pth", tmp_path / "split1" / "model.pth")
    proc = run_tool("eval_jhmdb.py", "--config-file", CONFIG, "--weights", tmp_path / "split{split}" / "model.pth",
                    "--split", "all", "--out", tmp_path, "--json", tmp_path / "all.json", "--plots", tmp_path / "plots",
                    *SMALL, datasets=datasets)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.load(open(tmp_path / "all.json"))
    assert list(result["splits"]) == ["1"]
    assert result["frame_mAP"] == pytest.approx(json.load(open(out / "frame_map.json"))["frame_mAP"], abs=1e-9)
    assert (tmp_path / "detections_split1.npz").is_file()
    assert (tmp_path / "plots" / "split1" / "per_class_ap.png").is_file()


def _small_yaml(base: str, out, **extra) -> str:
    """A config file of ``SMALL``'s keys over ``base`` (a shipped config), for a stream a two-stream config names."""
    keys = dict(zip(SMALL[::2], SMALL[1::2]))
    keys.update({"OUTPUT_DIR": str(out), **extra})
    lines = [f"_BASE_: {os.path.join(ROOT, base)}"]
    tree = {}
    for key, value in keys.items():
        node = tree
        *parents, leaf = key.split(".")
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    def dump(node, indent):
        for k, v in node.items():
            if isinstance(v, dict):
                lines.append(" " * indent + f"{k}:")
                dump(v, indent + 2)
            else:
                lines.append(" " * indent + f"{k}: {v}")
    dump(tree, 0)
    return "\n".join(lines) + "\n"


@pytest.mark.slow
def test_flow_stream_trains_and_two_stream_evaluation_fuses_it(trained, tmp_path):
    """The flow config trains (its flow made on first use), and a two-stream config evaluates ACT's fusion: with
    weights [1, 0] exactly the RGB detector's detections, with [1, 1] other valid ones."""
    datasets, out, _ = trained
    flow_out = tmp_path / "flow"
    (tmp_path / "flow.yaml").write_text(_small_yaml("configs/synthetic/s3dg_tiny_flow.yaml", flow_out))
    proc = run_tool("train_det.py", "--config-file", tmp_path / "flow.yaml", datasets=datasets)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert os.path.isdir(datasets / "synthetic" / "Flow_dis") and (flow_out / "model_final.pth").is_file()
    reference = load_detections(str(out / "detections.npz"))
    gt = load_gt(str(datasets / "synthetic" / "synthetic-GT.pkl"))
    results = {}
    for weights in ("[1.0, 0.0]", "[1.0, 1.0]"):
        two = tmp_path / "two.yaml"
        two.write_text(_small_yaml("configs/synthetic/s3dg_tiny.yaml", tmp_path / "two_out",
                                   **{"MODEL.TWO_STREAM.FLOW_CONFIG": "flow.yaml",
                                      "MODEL.TWO_STREAM.WEIGHTS": weights}))
        proc = run_tool("eval_jhmdb.py", "--config-file", two, "--weights", out / "model_final.pth",
                        "--out", tmp_path / weights, datasets=datasets)
        assert proc.returncode == 0, proc.stderr[-3000:]
        results[weights] = load_detections(str(tmp_path / weights / "detections_split1.npz"))
        check_detections(results[weights], gt=gt)
    np.testing.assert_allclose(results["[1.0, 0.0]"].frame_dets, reference.frame_dets, rtol=0, atol=1e-4)
    assert not np.allclose(results["[1.0, 1.0]"].frame_dets[:, 3], reference.frame_dets[:, 3], atol=1e-3)
    # a flow stream that sees other clips is refused, naming the key
    (tmp_path / "flow.yaml").write_text(_small_yaml("configs/synthetic/s3dg_tiny_flow.yaml", flow_out,
                                                    **{"INPUT.CLIP_LENGTH": "8"}))
    proc = run_tool("eval_jhmdb.py", "--config-file", two, "--weights", out / "model_final.pth", datasets=datasets)
    assert proc.returncode == 2 and "INPUT.CLIP_LENGTH" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_eval_tool_model_mode_errors_with_accuracy_on_gt_boxes(trained, tmp_path):
    """--errors in model mode: ACT's error table of the model's detections (summing to 100 a class) and the model's
    classification accuracy on the GT boxes, run with the same weights on oracle boxes."""
    datasets, out, _ = trained
    proc = run_tool("eval_jhmdb.py", "--config-file", CONFIG, "--weights", out / "model_final.pth", "--errors",
                    "--out", tmp_path, "--json", tmp_path / "result.json", *SMALL, datasets=datasets)
    assert proc.returncode == 0, proc.stderr[-3000:]
    errors = json.load(open(tmp_path / "result.json"))["errors"]
    accuracy = errors["gt_box_accuracy"]
    gt = load_gt(str(datasets / "synthetic" / "synthetic-GT.pkl"))
    test = gt["test_videos"][0]
    boxes = {}
    for video in test:
        for label, tubes in gt["gttubes"][video].items():
            boxes[gt["labels"][label]] = boxes.get(gt["labels"][label], 0) + sum(len(t) for t in tubes)
    assert accuracy["num_gt"] == boxes  # every GT box of the test videos, per class
    assert all(0 <= accuracy["accuracy"][c] <= 100 for c in boxes) and sum(accuracy["num_no_box"].values()) == 0
    assert "classification accuracy on the GT boxes" in proc.stdout
