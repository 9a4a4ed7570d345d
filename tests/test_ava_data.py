"""AVA as training data and AVA-style evaluation of our detections (s3d_det.data.ava_gt): the keyframe convention,
AVA CSVs -> GT pickle on hand-made frames, the synthetic set exported as AVA files (perfect detections score 100,
shifted ones 0), the round trip CSV -> GT -> CSV, and the tools (slow)."""
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from s3d_det.data.annotations import load_gt, save_gt
from s3d_det.data.ava import read_ava_detections, read_ava_gt, read_ava_labelmap, write_ava_detections
from s3d_det.data.ava_gt import (
    detections_to_ava,
    gt_from_ava,
    gt_to_ava,
    keyframe_of,
    score_ava,
    timestamp_of,
    write_ava_gt,
    write_ava_labelmap,
)
from s3d_det.data.errors import DataError
from s3d_det.engine.evaluation import score_detections
from s3d_det.evaluation.ava import ava_frame_ap
from s3d_det.evaluation.detections import Detections, save_detections

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FPS = 5  # the synthetic videos are 32-40 frames: a keyframe every 5 frames gives a few per tube

MAP = """label {
  name: "stand"
  label_id: 3
}
label {
  name: "sit"
  label_id: 1
}
"""


def test_keyframe_convention():
    # SlowFast: 0-based frame (t - 900) * 30 of frames extracted from second 900, i.e. file <id>_{+1:06d}.jpg
    assert keyframe_of(900) == 1 and keyframe_of(902) == 61 and keyframe_of(1798) == 26941
    assert timestamp_of(61) == 902 and timestamp_of(26941) == 1798 and timestamp_of(62) is None
    assert keyframe_of(901, fps=2, start=900) == 3 and timestamp_of(5, fps=2) == 902


def make_frames(root, video, n, size=(64, 80)):
    folder = os.path.join(root, "Frames", video)
    os.makedirs(folder)
    for k in range(1, n + 1):
        cv2.imwrite(os.path.join(folder, f"{k:05d}.jpg"), np.zeros((*size, 3), np.uint8))


def write(path, text):
    path.write_text(text)
    return str(path)


def test_gt_from_ava_hand_made(tmp_path):
    make_frames(str(tmp_path), "vidA", 7)  # 80 wide, 64 high; at 2 fps from 900: second 901 is frame 3, 903 frame 7
    make_frames(str(tmp_path), "vidB", 3)
    labelmap = write(tmp_path / "map.pbtxt", MAP)
    train = write(tmp_path / "train.csv",
                  "vidA,0901,0.100,0.200,0.500,0.600,1,0\n"    # person 0 sits and stands at 901
                  "vidA,0901,0.100,0.200,0.500,0.600,3,0\n"
                  "vidA,0901,0.500,0.000,1.000,1.000,7,1\n"    # action 7 is not in the label map: left out
                  "vidA,0902,0.125,0.250,0.500,0.500,1,0\n"    # 902: frame 5, 2 frames on: the same tube
                  "vidA,0902,0.750,0.500,1.000,1.000,1,2\n"    # person 2 sits at 902 only
                  "vidA,0903,0.000,0.000,0.250,0.500,1,0\n")   # 903: frame 7
    val = write(tmp_path / "val.csv", "vidB,0901,0.000,0.000,1.000,1.000,3,4\n")
    gt = gt_from_ava(train, labelmap=labelmap, val_csv=val, frames_root=str(tmp_path), fps=2, max_gap=2)
    assert gt["labels"] == ["sit", "stand"]  # id order: 1, 3
    assert gt["train_videos"] == [["vidA"]] and gt["test_videos"] == [["vidB"]]
    assert gt["nframes"] == {"vidA": 7, "vidB": 3} and gt["resolution"]["vidA"] == (64, 80)
    sit, other = gt["gttubes"]["vidA"][0]  # ordered by first frame, then person
    np.testing.assert_allclose(sit, [[3, 8, 12.8, 40, 38.4], [5, 10, 16, 40, 32], [7, 0, 0, 20, 32]], rtol=1e-6)
    np.testing.assert_allclose(other, [[5, 60, 32, 80, 64]], rtol=1e-6)
    (stand,) = gt["gttubes"]["vidA"][1]
    np.testing.assert_allclose(stand, [[3, 8, 12.8, 40, 38.4]], rtol=1e-6)
    assert gt["ava"]["action_ids"] == [1, 3] and gt["ava"]["keyframes"] == {"vidA": [3, 5, 7], "vidB": [3]}
    assert gt["ava"]["persons"] == {"vidA": {0: [0, 2], 1: [0]}, "vidB": {1: [4]}}
    # back to AVA rows: the file's rows of label-map actions, sorted by video, timestamp, person, action
    rows, labelmap_back = gt_to_ava(gt, split=1, subset="train")
    assert labelmap_back == {1: "sit", 3: "stand"}
    write_ava_gt(str(tmp_path / "again.csv"), rows)
    assert (tmp_path / "again.csv").read_text().splitlines() == [
        "vidA,0901,0.100,0.200,0.500,0.600,1,0", "vidA,0901,0.100,0.200,0.500,0.600,3,0",
        "vidA,0902,0.125,0.250,0.500,0.500,1,0", "vidA,0902,0.750,0.500,1.000,1.000,1,2",
        "vidA,0903,0.000,0.000,0.250,0.500,1,0"]
    # max gap 1: frames 3, 5, 7 are three tubes
    gt1 = gt_from_ava(train, labelmap=labelmap, val_csv=val, frames_root=str(tmp_path), fps=2, max_gap=1)
    assert [len(t) for t in gt1["gttubes"]["vidA"][0]] == [1, 1, 1, 1]
    # the extra key survives save_gt / load_gt
    save_gt(gt, str(tmp_path / "gt.pkl"))
    assert load_gt(str(tmp_path / "gt.pkl"))["ava"] == gt["ava"]


def test_gt_from_ava_errors(tmp_path):
    make_frames(str(tmp_path), "vidA", 4)
    labelmap = write(tmp_path / "map.pbtxt", MAP)
    cases = [
        ("vidZ,0901,0.1,0.1,0.2,0.2,1,0\n", r"train\.csv line 1: video 'vidZ' has no frame folder"),
        ("vidA,0901,0.1,0.1,0.2,0.2,1,0\nvidA,0903,0.1,0.1,0.2,0.2,1,0\n",
         r"train\.csv line 1: video 'vidA': keyframe at second 903 is frame 7, beyond the 4 frames"),
        ("vidA,0901,0.1,0.1,0.2,0.2,1\n", r"train\.csv: line 1: 7 columns; expected 8 with a person_id"),
        ("vidA,0901,0.1,0.1,0.2,0.2,1,0\nvidA,0901,0.1,0.1,0.3,0.2,3,0\n",
         r"train\.csv line 2: person '0' of video 'vidA' on frame 3 has another box"),
        ("vidA,0899,0.1,0.1,0.2,0.2,1,0\n", r"train\.csv: video 'vidA': timestamp 899 before the start second 900"),
    ]
    for text, message in cases:
        train = write(tmp_path / "train.csv", text)
        with pytest.raises(DataError, match=message):
            gt_from_ava(train, labelmap=labelmap, frames_root=str(tmp_path), fps=2)
    train = write(tmp_path / "train.csv", "vidA,0901,0.1,0.1,0.2,0.2,1,0\n")
    val = write(tmp_path / "val.csv", "vidA,0902,0.1,0.1,0.2,0.2,1,0\n")
    with pytest.raises(DataError, match=r"val\.csv line 1: video 'vidA' is also in .*train\.csv line 1"):
        gt_from_ava(train, labelmap=labelmap, val_csv=val, frames_root=str(tmp_path), fps=2)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    from s3d_det.data.synthetic import generate_synthetic

    root = str(tmp_path_factory.mktemp("ava") / "synthetic")
    path = generate_synthetic(root, num_videos=6, seed=3, size=(64, 80), min_frames=32, max_frames=40,
                              test_fraction=0.5, multi_label=1.0, progress=False)
    return root, load_gt(path)


def perfect_detections(gt, shift=False):
    """Every box of every tube of the test videos, on every frame it covers, score 1 (shifted by its width)."""
    videos = list(gt["test_videos"][0])
    rows = []
    for v, video in enumerate(videos):
        for label, tubes in gt["gttubes"][video].items():
            for tube in tubes:
                for f, x1, y1, x2, y2 in np.asarray(tube, np.float64):
                    dx = (x2 - x1 + 1) if shift else 0.0
                    rows.append([v, f, label, 1.0, x1 + dx, y1, x2 + dx, y2])
    return Detections(videos=videos, frame_dets=np.array(rows, np.float64).reshape(-1, 8))


def test_synthetic_perfect_and_shifted_detections(synthetic, tmp_path):
    _, gt = synthetic
    truth, labelmap = gt_to_ava(gt, split=1, subset="test", fps=FPS)
    assert labelmap == {1: "move_left", 2: "move_right", 3: "jump", 4: "wave", 5: "spin", 6: "crouch"}
    # a person doing two actions: rows with the same box and person on a keyframe, two action ids
    keys = [(v, t, p, tuple(b)) for v, t, p, b in zip(truth.video, truth.timestamp, truth.person, truth.boxes)]
    assert len(set(keys)) < len(keys)
    # the files as the tool reads them
    write_ava_gt(str(tmp_path / "val.csv"), truth)
    write_ava_labelmap(str(tmp_path / "map.pbtxt"), labelmap)
    truth, labelmap = read_ava_gt(str(tmp_path / "val.csv")), read_ava_labelmap(str(tmp_path / "map.pbtxt"))
    dets = detections_to_ava(gt, perfect_detections(gt), fps=FPS)
    assert len(dets) == len(truth)  # the rows on keyframes only: one per ground-truth row
    assert set(dets.timestamp) <= set(truth.timestamp) and all((dets.timestamp - 900) >= 0)
    write_ava_detections(str(tmp_path / "dets.csv"), dets)
    result = ava_frame_ap(truth, read_ava_detections(str(tmp_path / "dets.csv")), labelmap)
    assert result.mean == 100.0 and len(result.classes) >= 3
    shifted = detections_to_ava(gt, perfect_detections(gt, shift=True), fps=FPS)
    assert ava_frame_ap(truth, shifted, labelmap).mean == 0.0


def test_score_detections_ava_protocol(synthetic):
    _, gt = synthetic
    gt = {**gt, "ava": {"action_ids": [1, 2, 3, 4, 5, 6], "fps": FPS, "start": 900,
                        "keyframes": {v: list(range(1, n + 1, FPS)) for v, n in gt["nframes"].items()},
                        "persons": {v: {label: [0] * len(ts) for label, ts in per.items()}
                                    for v, per in gt["gttubes"].items()}}}
    result = score_detections(gt, perfect_detections(gt), protocol="ava")
    assert result["protocol"] == "ava" and result["frame_mAP"] == 100.0
    assert score_detections(gt, perfect_detections(gt, shift=True), protocol="ava")["frame_mAP"] == 0.0
    assert score_ava(gt, perfect_detections(gt)).mean == 100.0


def test_round_trip_csv_gt_csv(synthetic, tmp_path):
    root, gt = synthetic
    rows = {}
    for subset, name in (("train", "train.csv"), ("test", "val.csv")):
        boxes, labelmap = gt_to_ava(gt, split=1, subset=subset, fps=FPS)
        write_ava_gt(str(tmp_path / name), boxes)
        rows[name] = (tmp_path / name).read_text()
    write_ava_labelmap(str(tmp_path / "map.pbtxt"), labelmap)
    back = gt_from_ava(str(tmp_path / "train.csv"), labelmap=str(tmp_path / "map.pbtxt"),
                       val_csv=str(tmp_path / "val.csv"), frames_root=root, fps=FPS, max_gap=FPS)
    assert [sorted(v) for v in back["train_videos"]] == [sorted(v) for v in gt["train_videos"]]
    assert [sorted(v) for v in back["test_videos"]] == [sorted(v) for v in gt["test_videos"]]
    assert back["labels"] == gt["labels"] and back["nframes"] == gt["nframes"]
    for subset, name in (("train", "train.csv"), ("test", "val.csv")):
        again, _ = gt_to_ava(back, split=1, subset=subset)  # fps and start from back["ava"]
        write_ava_gt(str(tmp_path / f"again_{name}"), again)
        assert (tmp_path / f"again_{name}").read_text() == rows[name]
    assert len(rows["train.csv"].splitlines()) > 10
    # a sparse tube: one person's keyframes of one action, FPS frames apart
    tube = next(t for per in back["gttubes"].values() for ts in per.values() for t in ts if len(t) > 1)
    assert (np.diff(tube[:, 0]) == FPS).all()


@pytest.mark.slow
def test_tools_ava_export_and_score(synthetic, tmp_path):
    root, gt = synthetic
    gt_path = os.path.join(root, "synthetic-GT.pkl")
    dets = str(tmp_path / "dets.npz")
    save_detections(dets, perfect_detections(gt))
    out = tmp_path / "ava"

    def tool(*argv):
        # PYTHONPATH: the tools import this tree's s3d_det, not another checkout's editable install
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")])}
        return subprocess.run([sys.executable, *argv], capture_output=True, text=True, cwd=ROOT, timeout=300, env=env)

    run = tool("tools/prepare_data.py", "ava-export", gt_path, "--out", str(out), "--fps", str(FPS),
               "--detections", dets)
    assert run.returncode == 0, run.stderr
    again = tool("tools/prepare_data.py", "ava-export", gt_path, "--out", str(out))
    assert again.returncode == 2 and "already holds train.csv, val.csv, labelmap.pbtxt" in again.stderr
    score = tool("tools/eval_jhmdb.py", "--protocol", "ava", "--gt", str(out / "val.csv"), "--detections",
                 str(out / "detections.csv"), "--labelmap", str(out / "labelmap.pbtxt"), "--json",
                 str(tmp_path / "r.json"))
    assert score.returncode == 0, score.stderr
    import json

    assert json.loads((tmp_path / "r.json").read_text())["frame_mAP"] == 100.0
    made = tool("tools/prepare_data.py", "ava", str(out / "train.csv"), "--val", str(out / "val.csv"), "--labelmap",
                str(out / "labelmap.pbtxt"), "--frames", root, "--fps", str(FPS), "--max-gap", str(FPS), "--out",
                str(tmp_path / "ava-GT.pkl"))
    assert made.returncode == 0, made.stderr
    assert load_gt(str(tmp_path / "ava-GT.pkl"))["ava"]["fps"] == FPS
    bad = tool("tools/prepare_data.py", "ava", str(out / "train.csv"), "--labelmap", str(out / "labelmap.pbtxt"),
               "--frames", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x.pkl"))
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "train.csv line 1" in bad.stderr


def test_eval_tool_model_mode_takes_protocol_ava(tmp_path, capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("eval_jhmdb", os.path.join(ROOT, "tools", "eval_jhmdb.py"))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    args = tool.parse_args(["--config-file", "cfg.yaml", "--weights", "w.pth", "--protocol", "ava"])
    assert args.protocol == "ava" and args.labelmap is None
    for extra, message in ((["--labelmap", "m.pbtxt"], "model mode takes the action ids"),
                           (["--split", "all"], "--split all does not go with --protocol ava")):
        with pytest.raises(SystemExit) as stop:
            tool.parse_args(["--config-file", "cfg.yaml", "--weights", "w.pth", "--protocol", "ava", *extra])
        assert stop.value.code == 2 and message in capsys.readouterr().err
    # scoring mode still needs the label map
    with pytest.raises(SystemExit):
        tool.parse_args(["--gt", "g.csv", "--detections", "d.csv", "--protocol", "ava"])
    assert "--protocol ava needs --labelmap" in capsys.readouterr().err


def test_bad_ava_key_is_one_error_naming_the_key(synthetic):
    _, gt = synthetic
    good = {"action_ids": [1, 2, 3, 4, 5, 6], "fps": FPS, "start": 900,
            "keyframes": {v: list(range(1, n + 1, FPS)) for v, n in gt["nframes"].items()},
            "persons": {v: {label: [0] * len(ts) for label, ts in per.items()} for v, per in gt["gttubes"].items()}}
    gt_to_ava({**gt, "ava": good})
    video = next(v for v, per in gt["gttubes"].items() if per)
    label = next(iter(gt["gttubes"][video]))
    cases = [
        ({"action_ids": [1, 2, 3]}, r"'ava/action_ids': expected 6 distinct integers >= 1"),
        ({"action_ids": [1, 1, 3, 4, 5, 6]}, r"'ava/action_ids'"),
        ({"fps": 0}, r"'ava/fps'"),
        ({"keyframes": {video: [5, 1]}}, rf"'ava/keyframes/{video}': expected increasing frames"),
        ({"keyframes": {video: [10 ** 6]}}, rf"'ava/keyframes/{video}'"),
        ({"persons": {}}, r"'ava/persons/.*': expected \d+ integer person ids"),
        ({"persons": {**good["persons"], video: {**good["persons"][video], label: []}}},
         rf"'ava/persons/{video}/{label}'"),
    ]
    for change, message in cases:
        with pytest.raises(DataError, match=message):
            gt_to_ava({**gt, "ava": {**good, **change}})


def test_load_gt_checks_the_ava_key(tmp_path):
    import pickle

    make_frames(str(tmp_path), "vidA", 4)
    gt = gt_from_ava(write(tmp_path / "train.csv", "vidA,0901,0.1,0.1,0.2,0.2,1,0\n"),
                     labelmap=write(tmp_path / "map.pbtxt", MAP), frames_root=str(tmp_path), fps=2)
    gt["ava"]["fps"] = "30"
    with open(tmp_path / "bad.pkl", "wb") as f:
        pickle.dump(gt, f)
    with pytest.raises(DataError, match=r"bad\.pkl: key 'ava/fps'"):
        load_gt(str(tmp_path / "bad.pkl"))


def test_drop_duplicate_tubes_keeps_the_ava_key(tmp_path):
    from s3d_det.data.annotations import drop_duplicate_tubes

    make_frames(str(tmp_path), "vidA", 4)
    gt = gt_from_ava(write(tmp_path / "train.csv", "vidA,0901,0.1,0.1,0.2,0.2,1,0\nvidA,0901,0.5,0.5,0.7,0.7,1,5\n"),
                     labelmap=write(tmp_path / "map.pbtxt", MAP), frames_root=str(tmp_path), fps=2)
    gt["gttubes"]["vidA"][0].append(gt["gttubes"]["vidA"][0][0].copy())  # a copy of person 0's tube
    gt["ava"]["persons"]["vidA"][0].append(7)
    kept, dropped = drop_duplicate_tubes(gt)
    assert dropped == [("vidA", 0, 2, 0)] and kept["ava"]["persons"] == {"vidA": {0: [0, 5]}}
    assert kept["ava"]["action_ids"] == [1, 3]


def test_ava_evaluation_detects_on_the_keyframes_only():
    """TEST.PROTOCOL ava scores only keyframes, so only they are detected: AVA's own (the GT's ``ava`` key) or, for
    a GT without it, every 30th frame from frame 1; the other protocols detect on every frame."""
    from s3d_det.data.annotations import make_gt
    from s3d_det.engine.evaluation import keyframes_to_detect

    tube = np.array([[f, 1, 1, 9, 9] for f in range(1, 71)], np.float32)
    gt = make_gt(labels=["a"], nframes={"v": 70}, resolution={"v": (10, 10)}, gttubes={"v": {0: [tube]}},
                 train_videos=[["v"]], test_videos=[["v"]])
    assert keyframes_to_detect(gt, "act") is None
    assert keyframes_to_detect(gt, "ava") == {"v": [1, 31, 61]}
