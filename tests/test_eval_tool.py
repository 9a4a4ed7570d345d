"""tools/eval_jhmdb.py run as a user runs it (subprocess), on a tiny ground truth and detection files written
here."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from s3d_det.data.annotations import make_gt, save_gt
from s3d_det.evaluation.detections import Detections, save_detections

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LABELS = ["run", "jump", "wave"]
RUN_TUBE = np.column_stack([np.arange(1, 21), np.tile([10, 20, 60, 100], (20, 1))]).astype(np.float32)
JUMP_TUBE = np.column_stack([np.arange(3, 19), np.tile([100, 50, 180, 200], (16, 1))]).astype(np.float32)


def run_eval(*args):
    # PYTHONPATH: the tool imports this tree's s3d_det, not another checkout's editable install
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "tools/eval_jhmdb.py", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, env=env)


@pytest.fixture(scope="module")
def gt_file(tmp_path_factory):
    """Test list of split 1: run/v1 and jump/v1; wave/v1 (the only wave video) is a training video."""
    gt = make_gt(
        labels=LABELS,
        nframes={"run/v1": 25, "jump/v1": 20, "wave/v1": 10},
        resolution={v: (240, 320) for v in ("run/v1", "jump/v1", "wave/v1")},
        gttubes={"run/v1": {0: [RUN_TUBE]}, "jump/v1": {1: [JUMP_TUBE]},
                 "wave/v1": {2: [RUN_TUBE[:10]]}},
        train_videos=["wave/v1"],
        test_videos=["run/v1", "jump/v1"],
    )
    path = tmp_path_factory.mktemp("gt") / "gt.pkl"
    save_gt(gt, str(path))
    return path


def perfect_rows():
    """frame_dets for the videos ["jump/v1", "run/v1"] (not the test list's order): every GT box, score 0.9."""
    rows = [[0, f, 1, 0.9, *box] for f, *box in JUMP_TUBE.tolist()]
    rows += [[1, f, 0, 0.9, *box] for f, *box in RUN_TUBE.tolist()]
    return np.array(rows, dtype=np.float64)


def write_dets(path, frame_dets, videos=("jump/v1", "run/v1")):
    save_detections(str(path), Detections(videos=list(videos), frame_dets=frame_dets))
    return path


def test_scores_perfect_detections_writes_json_and_plots(gt_file, tmp_path):
    dets = write_dets(tmp_path / "dets.npz", perfect_rows())
    out = tmp_path / "out.json"
    proc = run_eval("--gt", gt_file, "--detections", dets, "--video-map", "--json", out, "--plots", tmp_path / "p")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert set(result) == {"protocol", "iou", "frame_mAP", "per_class_AP", "video_mAP"}
    assert result["protocol"] == "act" and result["iou"] == 0.5
    # act averages over all 3 classes; wave has no test GT and scores 0
    assert result["per_class_AP"] == pytest.approx({"run": 100.0, "jump": 100.0, "wave": 0.0})
    assert result["frame_mAP"] == pytest.approx(200 / 3)
    assert result["video_mAP"] == pytest.approx({"0.2": 200 / 3, "0.5": 200 / 3, "0.75": 200 / 3,
                                                 "0.5:0.95": 200 / 3})
    for name in ("per_class_ap.png", "pr_curves.png"):
        assert (tmp_path / "p" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = proc.stdout.splitlines()
    assert any(line.split("|")[0].strip() == "jump" and line.split("|")[-1].strip() == "100.00" for line in table)
    assert "frame-mAP@0.5: 66.67" in proc.stdout


def test_voc_protocol_leaves_out_classes_without_gt_and_video_map_is_null(gt_file, tmp_path):
    rows = perfect_rows()
    rows[:, 3] = np.linspace(0.9, 0.1, len(rows))
    rows[::2, 4:8] += 200  # every other box misses (run: alternating hits, from a hit)
    dets = write_dets(tmp_path / "dets.npz", rows)
    out = tmp_path / "out.json"
    proc = run_eval("--gt", gt_file, "--detections", dets, "--protocol", "voc", "--json", out)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert result["video_mAP"] is None
    assert set(result["per_class_AP"]) == {"run", "jump"}
    # jump (16 rows, ranked first): miss, hit, miss, ... -> VOC all-points AP = mean of precision at each hit
    # 1/2, 2/4, ..., 8/16 over 16 GT boxes = 8 * 0.5 / 16
    assert result["per_class_AP"]["jump"] == pytest.approx(100 * 8 * 0.5 / 16)


def test_video_map_uses_the_files_tubes(gt_file, tmp_path):
    # one perfect run tube and the jump tube 2 frames early: st-IoU 14/18 = 0.78 (frames counted inclusively)
    tubes = np.array([[1, 0, 0.9], [0, 1, 0.8]])
    shifted = JUMP_TUBE.copy()
    shifted[:, 0] -= 2
    tube_boxes = np.vstack([np.column_stack([np.zeros(20), RUN_TUBE]), np.column_stack([np.ones(16), shifted])])
    path = tmp_path / "tubes.npz"
    save_detections(str(path), Detections(["jump/v1", "run/v1"], np.zeros((0, 8)), tubes, tube_boxes))
    out = tmp_path / "out.json"
    proc = run_eval("--gt", gt_file, "--detections", path, "--video-map", "--json", out)
    assert proc.returncode == 0, proc.stderr
    assert "the file's tubes" in proc.stdout
    # run 100 everywhere; jump 100 up to 0.75, 0 above; wave 0; 0.5:0.95 -> jump 100 at 6 of the 10 thresholds
    assert json.loads(out.read_text())["video_mAP"] == pytest.approx(
        {"0.2": 200 / 3, "0.5": 200 / 3, "0.75": 200 / 3, "0.5:0.95": (100 + 60) / 3})


def test_empty_detections_score_zero(gt_file, tmp_path):
    dets = write_dets(tmp_path / "empty.npz", np.zeros((0, 8)), videos=())
    out = tmp_path / "out.json"
    proc = run_eval("--gt", gt_file, "--detections", dets, "--video-map", "--json", out)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert result["frame_mAP"] == 0.0 and result["video_mAP"]["0.5"] == 0.0


@pytest.mark.parametrize("case, expected", [
    ("unknown_video", "frame_dets row 20: video 'wave/v1' is not in the test list of split 1"),
    ("label", "frame_dets row 3: label 3 out of range"),
    ("nan", "frame_dets row 5: non-finite value"),
    ("x2_lt_x1", "frame_dets row 7: x2 < x1"),
    ("not_npz", "not a detections .npz"),
    ("empty", "empty file (0 bytes); expected an .npz archive"),
    ("int", "key 'frame_dets' must be a float array (n, 8) (float64 in the format; integers would truncate"),
])
def test_bad_detections_exit_2_with_one_line_naming_file_and_row(gt_file, tmp_path, case, expected):
    rows = perfect_rows()
    path = tmp_path / "bad.npz"
    if case == "not_npz":
        path.write_text("frame,score\n1,0.5\n")
    elif case == "empty":
        path.write_bytes(b"")
    elif case == "int":
        np.savez(path, videos=np.array(["jump/v1", "run/v1"]), frame_dets=rows.astype(np.int64))
    else:
        videos = ["jump/v1", "run/v1"]
        if case == "unknown_video":
            videos.append("wave/v1")
            rows[20, 0] = 2
        elif case == "label":
            rows[3, 2] = 3
        elif case == "nan":
            rows[5, 6] = np.nan
        else:
            rows[7, 6] = rows[7, 4] - 1
        np.savez(path, videos=np.array(videos), frame_dets=rows)  # written raw: save_detections checks nothing
    proc = run_eval("--gt", gt_file, "--detections", path)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert str(path) in proc.stderr and expected in proc.stderr and "allow_pickle" not in proc.stderr


def test_bad_gt_and_modes_exit_2(gt_file, tmp_path):
    dets = write_dets(tmp_path / "dets.npz", perfect_rows())
    proc = run_eval("--gt", tmp_path / "missing.pkl", "--detections", dets)
    assert proc.returncode == 2 and "missing.pkl" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_eval("--gt", gt_file, "--detections", dets, "--split", "2")
    assert proc.returncode == 2 and "split 2 does not exist" in proc.stderr
    proc = run_eval("--config-file", "cfg.yaml", "--weights", "w.pth", "--split", "all")
    assert proc.returncode == 2 and "put {split} in --weights" in proc.stderr
    proc = run_eval("--config-file", "cfg.yaml", "--weights", "w.pth", "--split", "x")
    assert proc.returncode == 2 and "a split number or 'all'" in proc.stderr
    proc = run_eval("--gt", gt_file, "--detections", dets, "SOLVER.BASE_LR", "1")
    assert proc.returncode == 2 and "KEY VALUE overrides goes with --config-file" in proc.stderr
    proc = run_eval("--gt", gt_file, "--config-file", "cfg.yaml")
    assert proc.returncode == 2 and "not allowed with argument" in proc.stderr


def test_bad_gt_boxes_exit_2_naming_video_tube_and_frame(tmp_path):
    """x2 < x1 in a GT box: the evaluation used to score it; now one line names the video, tube and frame."""
    bad = RUN_TUBE.copy()
    bad[4, 3] = bad[4, 1] - 5
    gt = make_gt(labels=LABELS, nframes={"run/v1": 25, "jump/v1": 20}, resolution={"run/v1": (240, 320),
                 "jump/v1": (240, 320)}, gttubes={"run/v1": {0: [bad]}, "jump/v1": {1: [JUMP_TUBE]}},
                 train_videos=[], test_videos=["run/v1", "jump/v1"])
    path = tmp_path / "gt.pkl"
    save_gt(gt, str(path))
    proc = run_eval("--gt", path, "--detections", write_dets(tmp_path / "dets.npz", perfect_rows()))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert f"{path}: video 'run/v1', tube 0 of label 0 (run), frame 5: x2 < x1" in proc.stderr


def test_inference_loader_is_a_deprecated_alias_of_per_keyframe(tmp_path, capsys):
    """The DataLoader path is gone: ``--inference loader`` runs ``per_keyframe`` (the same detections) after a
    one-line note; the default is ``per_keyframe``; ``--inference`` stays a model-mode option."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("eval_jhmdb_tool", os.path.join(ROOT, "tools", "eval_jhmdb.py"))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    model = ["--config-file", "cfg.yaml", "--weights", "w.pth"]
    assert tool.parse_args(model).inference == "per_keyframe"
    assert capsys.readouterr().err == ""
    assert tool.parse_args(model + ["--inference", "loader"]).inference == "per_keyframe"
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--inference loader is deprecated" in err and "per_keyframe" in err
    assert tool.parse_args(model + ["--inference", "shared"]).inference == "shared"
    proc = run_eval(*model, "--inference", "loader")  # as a user runs it: the note, then the one-line error
    assert proc.returncode == 2 and "deprecated" in proc.stderr and "w.pth" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_fuse_scores_two_streams_files(gt_file, tmp_path):
    """--fuse pairs the two files' detections (the flow file lists the videos in another order): the paired GT
    boxes keep 0.9, the flow file's false run box, unpaired, drops from 1.0 to 0.5 below them, so run is perfect
    again; scored alone the flow file puts that false box first."""
    rgb = write_dets(tmp_path / "rgb.npz", perfect_rows())
    flow_rows = perfect_rows()
    flow_rows[:, 0] = 1 - flow_rows[:, 0]  # the videos listed as ["run/v1", "jump/v1"]
    flow_rows = np.vstack([flow_rows, [[0, 5, 0, 1.0, 200, 150, 260, 230]]])  # run/v1 frame 5, far from its box
    flow = write_dets(tmp_path / "flow.npz", flow_rows, videos=("run/v1", "jump/v1"))
    alone = run_eval("--gt", gt_file, "--detections", flow, "--json", tmp_path / "alone.json")
    fused = run_eval("--gt", gt_file, "--detections", rgb, "--fuse", flow, "--json", tmp_path / "fused.json")
    assert alone.returncode == 0 and fused.returncode == 0, alone.stderr + fused.stderr
    assert json.loads((tmp_path / "alone.json").read_text())["per_class_AP"]["run"] < 99.0
    assert json.loads((tmp_path / "fused.json").read_text())["per_class_AP"] == pytest.approx(
        {"run": 100.0, "jump": 100.0, "wave": 0.0})
    assert "fused with" in fused.stdout
    missing = run_eval("--gt", gt_file, "--detections", rgb, "--fuse", tmp_path / "none.npz")
    assert missing.returncode == 2 and "none.npz" in missing.stderr and len(missing.stderr.strip().splitlines()) == 1
    zero = run_eval("--gt", gt_file, "--detections", rgb, "--fuse", flow, "--fuse-weights", "0", "0")
    assert zero.returncode == 2 and "--fuse-weights" in zero.stderr
