"""tools/visualize_video.py on a synthetic video: the written video decodes with the source's frame count, size
and rate, box pixels appear where the detections are (and not for those under the threshold), the ground truth
is drawn dashed, the contact sheet, GIF and JSON; a random tiny model end to end; bad input named."""
import importlib.util
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from s3d_det.data.annotations import make_gt, save_gt
from s3d_det.evaluation.detections import Detections, save_detections
from s3d_det.vis import TUBE_COLORS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
H, W, N, FPS = 120, 160, 20, 10.0
GRAY = 128
BOX = (40, 30, 100, 90)  # the detection drawn on every frame, original pixels
FAINT = (110, 20, 150, 70)  # a detection under the threshold: never drawn
GT_BOX = (8, 60, 48, 110)  # a ground-truth box on frames 5..10


def run_tool(*args, threads=1, **env):
    # PYTHONPATH: the tool imports this tree's s3d_det, not another checkout's editable install
    env = {**os.environ, "OMP_NUM_THREADS": str(threads),
           "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]), **env}
    return subprocess.run([sys.executable, "tools/visualize_video.py", "--quiet", *map(str, args)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)


def tool_main():
    spec = importlib.util.spec_from_file_location("visualize_video", os.path.join(ROOT, "tools/visualize_video.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A 20-frame 160x120 grey MP4 at 10 fps, detections of it (one box a frame at 0.9, one at 0.2), and a ground
    truth holding it."""
    folder = tmp_path_factory.mktemp("vis")
    video = folder / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (W, H))
    for _ in range(N):
        writer.write(np.full((H, W, 3), GRAY, np.uint8))
    writer.release()
    rows = [[0, f, 0, 0.9, *BOX] for f in range(1, N + 1)] + [[0, f, 1, 0.2, *FAINT] for f in range(1, N + 1)]
    dets = folder / "dets.npz"
    save_detections(str(dets), Detections(videos=["walk/clip"], frame_dets=np.array(rows, dtype=np.float64)))
    tube = np.array([[f, *GT_BOX] for f in range(5, 11)], dtype=np.float32)
    gt = make_gt(labels=["walk", "run"], nframes={"walk/clip": N}, resolution={"walk/clip": (H, W)},
                 gttubes={"walk/clip": {1: [tube]}}, train_videos=[], test_videos=["walk/clip"])
    gt_path = folder / "gt.pkl"
    save_gt(gt, str(gt_path))
    return folder, video, dets, gt_path


def decode(path):
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    fps = cap.get(cv2.CAP_PROP_FPS)
    cap.release()
    return frames, fps


def near(pixel, color, tol=60):
    return np.abs(pixel.astype(int) - np.array(color)).max() <= tol


@pytest.mark.slow
def test_saved_detections_and_ground_truth_are_drawn(inputs, tmp_path):
    _, video, dets, gt = inputs
    out = tmp_path / "out.mp4"
    proc = run_tool("--detections", dets, "--input", video, "--output", out, "--gif", tmp_path / "out.gif",
                    "--sheet", tmp_path / "sheet.png", "--json", tmp_path / "out.json", "--gt", gt,
                    "--video", "walk/clip")
    assert proc.returncode == 0, proc.stderr
    frames, fps = decode(out)
    assert len(frames) == N and frames[0].shape == (H, W, 3) and fps == pytest.approx(FPS)
    x1, y1, x2, y2 = BOX
    blue = TUBE_COLORS[0]  # the only tube
    for frame in (frames[0], frames[N - 1]):
        for x, y in (((x1 + x2) // 2, y2), (x1, (y1 + y2) // 2), (x2, (y1 + y2) // 2)):  # bottom, left, right edges
            assert near(frame[y, x], blue), (x, y, frame[y, x])
        assert near(frame[(y1 + y2) // 2, (x1 + x2) // 2], (GRAY,) * 3, tol=12)  # the box's inside is untouched
        fx1, fy1, fx2, fy2 = FAINT
        assert near(frame[(fy1 + fy2) // 2, fx2], (GRAY,) * 3, tol=12)  # the 0.2 detection is not drawn
    gx1, gy1 = GT_BOX[:2]
    assert near(frames[5][gy1, gx1 + 1], (255, 255, 255))  # frame 6: the dashed GT box starts at its corner
    assert near(frames[0][gy1, gx1 + 1], (GRAY,) * 3, tol=12)  # frame 1 has no GT box
    assert not near(frames[0][4, 4], (GRAY,) * 3, tol=12)  # the frame number's label, top left

    sheet = cv2.imread(str(tmp_path / "sheet.png"))
    assert sheet.shape == (3 * H, 4 * W, 3)  # 12 of the 20 frames, 4 a row
    with Image.open(tmp_path / "out.gif") as gif:
        assert gif.n_frames == N and gif.size == (W, H)
    result = json.load(open(tmp_path / "out.json"))
    assert result["num_frames"] == N and result["classes"] == ["walk", "run"] and len(result["frames"]) == N
    assert result["frames"][3] == {"frame": 4, "boxes": [list(map(float, BOX))], "labels": ["walk"],
                                   "label_ids": [0], "scores": [0.9], "tubes": [0]}


@pytest.mark.slow
def test_a_model_on_a_video(inputs, tmp_path):
    """The quick-start config, shrunk, with random weights: every frame processed, the video written."""
    from s3d_det.config import load_config
    from s3d_det.engine.defaults import build_model

    _, video, _, _ = inputs
    small = ["INPUT.SHORT_SIDE_TEST", "64", "INPUT.CLIP_LENGTH", "4", "MODEL.RPN.POST_NMS_TOP_N_TEST", "5"]
    cfg = load_config(os.path.join(ROOT, "configs/synthetic/s3dg_tiny.yaml"), small)
    torch.manual_seed(0)
    weights = tmp_path / "random.pth"
    torch.save({"model": build_model(cfg, num_classes=6).state_dict()}, weights)
    out = tmp_path / "model.mp4"
    proc = run_tool("--config-file", "configs/synthetic/s3dg_tiny.yaml", "--weights", weights, "--input", video,
                    "--output", out, "--json", tmp_path / "model.json", "--score-thresh", "0", *small,
                    S3D_DET_DATASETS=str(tmp_path / "no_datasets"))  # not ./datasets, where the quick start writes
    assert proc.returncode == 0, proc.stderr
    frames, _ = decode(out)
    assert len(frames) == N and frames[0].shape == (H, W, 3)
    result = json.load(open(tmp_path / "model.json"))
    assert result["classes"] == [f"action {k}" for k in range(6)]  # no ground truth anywhere: names from the weights
    assert [f["frame"] for f in result["frames"]] == list(range(1, N + 1))
    assert all(len(f["boxes"]) > 0 for f in result["frames"])  # threshold 0: random heads score every proposal


def test_bad_input_is_named(inputs, tmp_path, capsys):
    folder, video, dets, _ = inputs
    main = tool_main()
    garbage = tmp_path / "broken.mp4"
    garbage.write_bytes(b"\x00not a video" * 50)
    empty = tmp_path / "empty.mp4"
    cv2.VideoWriter(str(empty), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (W, H)).release()
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for f in range(1, N + 1):
        cv2.imwrite(str(mixed / f"{f:05d}.jpg"), np.full((H // 2 if f == 3 else H, W, 3), GRAY, np.uint8))
    one_video = ["--detections", str(dets), "--output", str(tmp_path / "x.mp4"), "--quiet"]
    for source, expected in ((garbage, "broken.mp4"), (empty, "empty.mp4"), (tmp_path / "missing.mp4", "missing.mp4"),
                             (mixed, "00003.jpg is 60x160")):
        assert main(["--input", str(source), *one_video]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and expected in err, err
    assert not (tmp_path / "x.mp4").exists()  # nothing half-written
    assert main(["--input", str(video), "--detections", str(dets), "--video", "walk/other", "--output",
                 str(tmp_path / "y.mp4"), "--quiet"]) == 2
    assert "has no detections of video 'walk/other'" in capsys.readouterr().err


@pytest.mark.parametrize("content", [b"", b"frame,score\n1,0.5\n", "int"])
def test_bad_detections_files_exit_2_with_one_line(inputs, tmp_path, capsys, content):
    """A zero-byte .npz was an EOFError traceback, a text one numpy's allow_pickle advice, integer frame_dets drawn
    with their scores truncated to 0 or 1."""
    _, video, _, _ = inputs
    dets = tmp_path / "dets.npz"
    if content == "int":
        rows = np.array([[0, f, 0, 0.9, *BOX] for f in range(1, N + 1)])
        np.savez(dets, videos=np.array(["walk/clip"]), frame_dets=rows.astype(np.int64))
    else:
        dets.write_bytes(content)
    out = tmp_path / "x.mp4"
    assert tool_main()(["--input", str(video), "--detections", str(dets), "--output", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {dets}: ") and err.count("\n") == 1 and "allow_pickle" not in err, err
    assert not out.exists()
