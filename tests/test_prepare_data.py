"""tools/prepare_data.py run as a user runs it (subprocess): exit codes, printed summaries, written files."""
import os
import subprocess
import sys

import numpy as np
import pytest
from test_converters import TINY_SPLITS, tiny_masks, write_avi, write_jhmdb_release, write_labels

from s3d_det.data.annotations import load_gt, make_gt, save_gt

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def prepare(*args):
    # PYTHONPATH: the tools import this tree's s3d_det, not another checkout's editable install
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "tools/prepare_data.py", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, env=env)


@pytest.mark.slow
def test_ucf24_then_check_on_the_real_files(shared_data, tmp_path):
    folder = shared_data / "ucf101_24"
    out = tmp_path / "UCF101v2-GT.pkl"
    proc = prepare("ucf24", folder / "finalAnnots.mat", "--testlist", folder / "testlist01.txt", "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert "3194 videos, 4458 tubes" in proc.stdout and "24 classes" in proc.stdout
    assert len(load_gt(str(out))["nframes"]) == 3194
    proc = prepare("check", out)
    # the corrected annotations repeat two tubes exactly; check reports them and exits 1
    assert proc.returncode == 1, proc.stdout + proc.stderr
    test_row = next(line for line in proc.stdout.splitlines() if line.startswith("split 1 test"))
    assert [int(x) for x in test_row.split("|")[1:]] == [910, 1315, 159289, 138527, 170580]
    assert "CricketBowling/v_CricketBowling_g02_c04: tube 2 of label 4 repeats tube 1 exactly" in proc.stdout
    assert "2 problems" in proc.stdout


@pytest.mark.slow
def test_check_reports_planted_problems(tmp_path):
    good = np.array([[1, 10, 10, 20, 20], [2, 10, 10, 20, 20]])
    gt = make_gt(
        labels=["a", "b"],
        nframes={"a/v1": 2, "a/v2": 3, "b/v3": 2},
        resolution={"a/v1": (240, 320), "a/v2": (240, 320), "b/v3": (240, 320)},
        gttubes={"a/v1": {0: [good]},
                 "a/v2": {0: [np.array([[3, 10, 10, 20, 20], [4, 10, 10, 20, 20]])]},  # frame 4 > nframes
                 "b/v3": {1: [np.array([[1, 30, 10, 20, 20]])]}},  # x2 < x1
        train_videos=["a/v1", "b/v3"], test_videos=["a/v2", "b/v3"],  # b/v3 in both
    )
    path = tmp_path / "bad.pkl"
    save_gt(gt, str(path))
    proc = prepare("check", path)
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    assert any(line.startswith("a/v2:") and "4" in line and "outside 1..3" in line for line in lines)
    assert any(line.startswith("b/v3:") and "x2 < x1" in line for line in lines)
    assert any(line.startswith("b/v3:") and "both train_videos and test_videos" in line for line in lines)
    assert "3 problems" in proc.stdout
    frames = tmp_path / "frames"
    (frames / "Frames/a/v1").mkdir(parents=True)
    proc = prepare("check", path, "--frames", frames)
    assert proc.returncode == 1 and "a/v1: frames 1-2 missing" in proc.stdout


@pytest.mark.slow
def test_jhmdb_and_yowo_labels_commands(tmp_path):
    write_jhmdb_release(tmp_path / "release", tiny_masks(), TINY_SPLITS)
    proc = prepare("jhmdb", tmp_path / "release", "--out", tmp_path / "jhmdb.pkl")
    assert proc.returncode == 0, proc.stderr
    assert "4 videos, 4 tubes, 8 boxes, 21 classes" in proc.stdout
    assert prepare("check", tmp_path / "jhmdb.pkl").returncode == 0

    write_labels(tmp_path / "labels", {"clap_v1_00001.txt": "3 1 2 3 4\n", "clap_v1_00002.txt": "3 1 2 3 x\n"})
    proc = prepare("yowo-labels", tmp_path / "labels", "--dataset", "jhmdb", "--out", tmp_path / "y.pkl")
    assert proc.returncode == 2
    assert "clap_v1_00002.txt, line 1" in proc.stderr and not (tmp_path / "y.pkl").exists()
    (tmp_path / "labels/clap_v1_00002.txt").write_text("3 1 2 3 5\n")
    proc = prepare("yowo-labels", tmp_path / "labels", "--dataset", "jhmdb", "--out", tmp_path / "y.pkl")
    assert proc.returncode == 0 and "1 videos, 1 tubes, 2 boxes" in proc.stdout


@pytest.mark.slow
def test_frames_command(tmp_path):
    write_avi(tmp_path / "videos/run/v1.avi", [(0, 0, 200)] * 3)
    proc = prepare("frames", tmp_path / "videos", "--out", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    assert "1 videos (1 extracted, 0 already complete), 3 frames" in proc.stdout
    assert sorted(os.listdir(tmp_path / "out/Frames/run/v1")) == [".done", "00001.jpg", "00002.jpg", "00003.jpg"]
    proc = prepare("frames", tmp_path / "videos", "--out", tmp_path / "out")
    assert "(0 extracted, 1 already complete)" in proc.stdout
    (tmp_path / "videos/run/bad.mp4").write_bytes(b"garbage")
    proc = prepare("frames", tmp_path / "videos", "--out", tmp_path / "out")
    assert proc.returncode == 2 and "run/bad.mp4" in proc.stderr


@pytest.mark.slow
def test_check_frames_finds_truncated_frames(tmp_path):
    """A JPEG cut short in the real frame layout: OpenCV reads it as a half-grey frame, check --frames names it."""
    import cv2

    tube = np.array([[f, 10, 10, 20, 20] for f in (1, 2, 3)])
    gt = make_gt(labels=["walk"], nframes={"walk/v1": 3}, resolution={"walk/v1": (24, 32)},
                 gttubes={"walk/v1": {0: [tube]}}, train_videos=[], test_videos=["walk/v1"])
    path = tmp_path / "gt.pkl"
    save_gt(gt, str(path))
    folder = tmp_path / "root" / "Frames" / "walk" / "v1"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for k in (1, 2, 3):
        assert cv2.imwrite(str(folder / f"{k:05d}.jpg"), rng.integers(0, 256, (24, 32, 3), dtype=np.uint8))
    proc = prepare("check", path, "--frames", tmp_path / "root")
    assert proc.returncode == 0 and "0 problems" in proc.stdout, proc.stdout + proc.stderr
    data = (folder / "00002.jpg").read_bytes()
    (folder / "00002.jpg").write_bytes(data[:len(data) // 2])
    proc = prepare("check", path, "--frames", tmp_path / "root")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    line = next(line for line in proc.stdout.splitlines() if line.startswith("walk/v1:"))
    assert "Frames/walk/v1/00002.jpg" in line and "truncated JPEG" in line and "FFD9" in line
    assert "1 problems" in proc.stdout
