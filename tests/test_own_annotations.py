"""Your own data: the CSV and CVAT converters (s3d_det/data/own_annotations.py) on small hand-made files, and the
worked example of docs/own-data.md (videos -> frames -> GT pickle) through tools/prepare_data.py."""
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from s3d_det.data.annotations import check_gt, load_gt, validate_gt
from s3d_det.data.errors import DataError
from s3d_det.data.own_annotations import gt_from_csv, gt_from_cvat, read_labels, read_split

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# two videos: "walk/v1" 8 frames and "v2" (no class folder) 5 frames, 64x48 (w x h)
VIDEOS = {"walk/v1": 8, "v2": 5}
W, H = 64, 48


@pytest.fixture
def data(tmp_path):
    """A frames root, a labels file and a split file; ``write(name, text)`` adds a file."""
    for video, n in VIDEOS.items():
        folder = tmp_path / "Frames" / video
        folder.mkdir(parents=True)
        for k in range(1, n + 1):
            cv2.imwrite(str(folder / f"{k:05d}.jpg"), np.full((H, W, 3), 10 * k, np.uint8))
    (tmp_path / "labels.txt").write_text("walk\nwave\n")
    (tmp_path / "split.csv").write_text("video,subset\nwalk/v1,train\nv2,test\n")

    def write(name, text):
        (tmp_path / name).write_text(text)
        return str(tmp_path / name)

    write.root = tmp_path
    return write


def convert(data, csv_text, **kwargs):
    path = data("ann.csv", csv_text)
    kwargs.setdefault("split_files", [str(data.root / "split.csv")])
    return gt_from_csv(path, labels=str(data.root / "labels.txt"), frames_root=str(data.root), **kwargs)


def rows(tube):
    return np.asarray(tube).tolist()


def test_rows_without_person_id_form_one_tube_per_run_of_consecutive_frames(data):
    gt = convert(data, "video,frame,x1,y1,x2,y2,action\n"
                       "walk/v1,2,1,2,11,22,walk\n"
                       "walk/v1,1,0,0,10,20,walk\n"   # out of order: sorted by frame
                       "walk/v1,3,2,2,12,22,walk\n"
                       "walk/v1,6,5,5,15,25,walk\n"   # frames 4-5 missing: a second tube
                       "v2,5,1,1,63,47,wave\n")
    check_gt(gt)
    assert gt["labels"] == ["walk", "wave"]
    assert gt["train_videos"] == [["walk/v1"]] and gt["test_videos"] == [["v2"]]
    assert gt["nframes"] == {"walk/v1": 8, "v2": 5} and gt["resolution"] == {"walk/v1": (48, 64), "v2": (48, 64)}
    tubes = gt["gttubes"]["walk/v1"][0]
    assert [rows(t) for t in tubes] == [[[1, 0, 0, 10, 20], [2, 1, 2, 11, 22], [3, 2, 2, 12, 22]],
                                        [[6, 5, 5, 15, 25]]]
    assert tubes[0].dtype == np.float32
    assert list(gt["gttubes"]["walk/v1"]) == [0]
    assert [rows(t) for t in gt["gttubes"]["v2"][1]] == [[[5, 1, 1, 63, 47]]]
    assert validate_gt(gt, frames_root=str(data.root)) == []


def test_max_gap_keeps_sparse_keyframes_in_one_tube(data):
    text = "walk/v1,1,0,0,10,20,walk\nwalk/v1,4,0,0,10,20,walk\nwalk/v1,8,0,0,10,20,walk\n"
    assert len(convert(data, text)["gttubes"]["walk/v1"][0]) == 3
    gt = convert(data, text, max_gap=3)  # 1 -> 4 within 3, 4 -> 8 not
    assert [np.asarray(t)[:, 0].tolist() for t in gt["gttubes"]["walk/v1"][0]] == [[1, 4], [8]]
    gt = convert(data, text, max_gap=4)
    assert [np.asarray(t)[:, 0].tolist() for t in gt["gttubes"]["walk/v1"][0]] == [[1, 4, 8]]


def test_person_ids_link_tubes_and_a_person_doing_two_actions_is_in_both_labels(data):
    gt = convert(data, "walk/v1,1,0,0,10,20,walk,a\n"
                       "walk/v1,1,30,0,40,20,walk,b\n"   # two people walk on one frame: fine with ids
                       "walk/v1,2,1,0,11,20,walk,a\n"
                       "walk/v1,2,1,0,11,20,wave,a\n"    # a also waves on frame 2: the same box
                       "walk/v1,2,31,0,41,20,walk,b\n"
                       "walk/v1,3,2,0,12,20,wave,a\n")
    walk, wave = gt["gttubes"]["walk/v1"][0], gt["gttubes"]["walk/v1"][1]
    assert [rows(t) for t in walk] == [[[1, 0, 0, 10, 20], [2, 1, 0, 11, 20]],
                                       [[1, 30, 0, 40, 20], [2, 31, 0, 41, 20]]]
    assert [rows(t) for t in wave] == [[[2, 1, 0, 11, 20], [3, 2, 0, 12, 20]]]
    assert gt["gttubes"]["v2"] == {}  # listed in the split, nobody acts


def test_several_split_files_give_several_splits(data):
    split2 = data("split2.csv", "walk/v1,test\nv2,train\n")
    gt = convert(data, "walk/v1,1,0,0,10,20,walk\n", split_files=[str(data.root / "split.csv"), split2])
    assert gt["train_videos"] == [["walk/v1"], ["v2"]] and gt["test_videos"] == [["v2"], ["walk/v1"]]


@pytest.mark.parametrize("text, message", [
    ("walk/v1,1,0,0,10,20\n", "ann.csv line 1: 6 fields; expected video,frame,x1,y1,x2,y2,action[,person_id]"),
    ("walk/v1,1,0,0,10,20,walk\nwalk/v1,2,0,0,10,20,walk,a\n", "ann.csv line 2: 8 fields; expected "
     "video,frame,x1,y1,x2,y2,action (as the rows above)"),
    ("video,frame,x,y,w,h,action\n", "ann.csv line 1: header video,frame,x,y,w,h,action; expected"),
    ("walk/v1,1,0,0,10,20,walk\n\nwalk/v1,two,0,0,10,20,walk\n", "ann.csv line 3: frame 'two' is not a whole"),
    ("walk/v1,0,0,0,10,20,walk\n", "ann.csv line 1: frame 0; expected frame numbers from 1"),
    ("walk/v1,9,0,0,10,20,walk\n", "ann.csv line 1: frame 9 beyond the 8 frames of video 'walk/v1'"),
    ("walk/v1,1,0,0,ten,20,walk\n", "ann.csv line 1: x2 'ten' is not a number"),
    ("walk/v1,1,0,0,nan,20,walk\n", "ann.csv line 1: x2 'nan' is not a number"),
    ("walk/v1,1,10,0,10,20,walk\n", "ann.csv line 1: box [10, 0, 10, 20] has x2 <= x1 or y2 <= y1"),
    ("walk/v1,1,0,20,10,5,walk\n", "ann.csv line 1: box [0, 20, 10, 5] has x2 <= x1 or y2 <= y1"),
    ("walk/v1,1,0,0,65.5,20,walk\n", "ann.csv line 1: box [0, 0, 65.5, 20] outside the 64x48 frames of video "
     "'walk/v1'"),
    ("walk/v1,1,-1.5,0,10,20,walk\n", "outside the 64x48 frames"),
    ("walk/v1,1,0,0,10,20,run\n", "ann.csv line 1: action 'run' is not in the labels file; expected one of walk, "
     "wave"),
    ("walk/v9,1,0,0,10,20,walk\n", "ann.csv line 1: video 'walk/v9' is in no split file"),
    ("walk/v1,1,0,0,10,20,walk\nwalk/v1,1,0,0,10,20,walk\n", "ann.csv line 2: duplicate of "),
    ("walk/v1,1,0,0,10,20,walk,a\nwalk/v1,1,0,0,10,20,walk,a\n", "ann.csv line 2: duplicate of "),
    ("walk/v1,1,0,0,10,20,walk\nwalk/v1,1,30,0,40,20,walk\n", "ann.csv line 2: a second box of the same action "
     "on frame 1 of video 'walk/v1' (the first is at "),
    ("walk/v1,1,0,0,10,20,walk,a\nwalk/v1,1,1,0,10,20,wave,a\n", "ann.csv line 2: person 'a' of video 'walk/v1' "
     "on frame 1 has another box than at "),
    ("walk/v1,1,0,0,10,20,walk,\n", "ann.csv line 1: empty person_id"),
    ("", "ann.csv: no annotation rows"),
])
def test_every_bad_row_is_an_error_naming_file_and_line(data, text, message):
    with pytest.raises(DataError) as info:
        convert(data, text)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_errors_name_the_first_line_in_duplicate_pairs(data):
    with pytest.raises(DataError, match=r"ann.csv line 3: a second box .*\(the first is at .*ann.csv line 1\)"):
        convert(data, "walk/v1,1,0,0,10,20,walk\nwalk/v1,2,0,0,10,20,walk\nwalk/v1,1,30,0,40,20,walk\n")


def test_label_and_split_file_errors(data):
    with pytest.raises(DataError, match=r"labels2.txt line 3: action 'walk' repeats line 1"):
        read_labels(data("labels2.txt", "walk\nwave\nwalk\n"))
    with pytest.raises(DataError, match=r"split.csv line 2: subset 'val' of video 'v2'; expected train or test"):
        read_split(data("split.csv", "walk/v1,train\nv2,val\n"))
    with pytest.raises(DataError, match=r"split.csv line 2: video 'walk/v1' repeats line 1"):
        read_split(data("split.csv", "walk/v1,train\nwalk/v1,test\n"))
    data("split.csv", "walk/v1,train\nv3,test\n")
    with pytest.raises(DataError, match=r"split.csv line 2: video 'v3' has no frame folder .*Frames/v3"):
        convert(data, "walk/v1,1,0,0,10,20,walk\n")


# ------------------------------------------------------------------------------------------------------ CVAT

def cvat_xml(tracks, name="walk/v1", extra_meta=""):
    return (f'<?xml version="1.0" encoding="utf-8"?>\n<annotations>\n  <version>1.1</version>\n  <meta><task>'
            f'<id>3</id><name>{name}</name><size>8</size><mode>interpolation</mode>{extra_meta}'
            f'<original_size><width>{W}</width><height>{H}</height></original_size></task></meta>\n'
            f'{tracks}</annotations>\n')


def box(frame, x, outside=0, action=None):
    attribute = "" if action is None else f'<attribute name="action">{action}</attribute>'
    return (f'<box frame="{frame}" outside="{outside}" occluded="0" keyframe="1" xtl="{x}" ytl="2.5" '
            f'xbr="{x + 10}" ybr="20" z_order="0">{attribute}</box>\n')


def test_cvat_frames_become_1_based_and_outside_boxes_leave_the_track(data):
    xml = cvat_xml('<track id="0" label="walk" source="manual">\n' + box(0, 0) + box(1, 1) + box(2, 2, outside=1)
                   + box(4, 4) + "</track>\n"
                   '<track id="1" label="wave" source="manual">\n' + box(7, 7) + "</track>\n")
    gt = gt_from_cvat([data("a.xml", xml)], labels=str(data.root / "labels.txt"),
                      split_files=[str(data.root / "split.csv")], frames_root=str(data.root))
    check_gt(gt)
    assert [rows(t) for t in gt["gttubes"]["walk/v1"][0]] == [[[1, 0, 2.5, 10, 20], [2, 1, 2.5, 11, 20]],
                                                            [[5, 4, 2.5, 14, 20]]]
    assert [rows(t) for t in gt["gttubes"]["walk/v1"][1]] == [[[8, 7, 2.5, 17, 20]]]


def test_cvat_action_attribute_splits_a_person_track_into_tubes_per_action(data):
    xml = cvat_xml('<track id="5" label="person" source="manual">\n' + box(0, 0, action="walk")
                   + box(1, 1, action="walk") + box(2, 2, action="wave") + box(3, 3, action="none")
                   + box(4, 4, action="walk") + "</track>\n", name="task name ignored")
    gt = gt_from_cvat([data("a.xml", xml)], labels=str(data.root / "labels.txt"),
                      split_files=[str(data.root / "split.csv")], frames_root=str(data.root), video="walk/v1",
                      action_attribute="action", max_gap=1)
    assert [np.asarray(t)[:, 0].tolist() for t in gt["gttubes"]["walk/v1"][0]] == [[1, 2], [5]]
    assert [np.asarray(t)[:, 0].tolist() for t in gt["gttubes"]["walk/v1"][1]] == [[3]]


@pytest.mark.parametrize("xml, kwargs, message", [
    (cvat_xml('<track id="0" label="run">' + box(0, 0) + "</track>"), {}, "a.xml track 0 frame 0: label 'run' is "
     "not in the labels file"),
    (cvat_xml('<track id="0" label="walk">' + box(8, 0) + "</track>"), {}, "a.xml track 0 frame 8: frame 9 beyond "
     "the 8 frames of video 'walk/v1'"),
    (cvat_xml('<track id="0" label="walk">' + box(0, 60) + "</track>"), {}, "a.xml track 0 frame 0: box [60, 2.5, "
     "70, 20] outside the 64x48 frames"),
    (cvat_xml('<track id="0" label="person">' + box(0, 0) + "</track>"), {"action_attribute": "action"},
     "a.xml track 0 frame 0: no attribute 'action'"),
    (cvat_xml("", extra_meta="<start_frame>10</start_frame>"), {}, "a.xml: task made with start_frame 10"),
    (cvat_xml("", name=""), {}, "a.xml: no <meta><task><name>"),
    (cvat_xml('<track id="0" label="walk">' + box(0, 0) + "</track>", name="v9"), {}, "video 'v9' is in no split"),
    ("<annotations><meta>", {}, "a.xml: not well-formed XML"),
    ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]>'
     "<annotations>&lol2;</annotations>", {}, "a.xml: declares a DOCTYPE or entities"),
    ("<images/>", {}, "a.xml: root element <images>; expected <annotations>"),
])
def test_cvat_errors(data, xml, kwargs, message):
    with pytest.raises(DataError) as info:
        gt_from_cvat([data("a.xml", xml)], labels=str(data.root / "labels.txt"),
                     split_files=[str(data.root / "split.csv")], frames_root=str(data.root), **kwargs)
    assert message in str(info.value)


# ------------------------------------------------------------------------------------------ the worked example

def prepare(*args, tool="prepare_data.py", datasets=None):
    # PYTHONPATH: the tools import this tree's s3d_det, not another checkout's editable install
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    if datasets is not None:
        env["S3D_DET_DATASETS"] = str(datasets)
    return subprocess.run([sys.executable, f"tools/{tool}", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, env=env)


# docs/own-data.md's config, over the quick start's (its PRETRAIN off: a path relative to the leaf's folder)
LEAF = """_BASE_: {root}/configs/synthetic/s3dg_tiny.yaml
MODEL:
  BACKBONE_3D:
    PRETRAIN: ""
DATASETS:
  NAME: mine
  ROOT: mine
  GT: mine-GT.pkl
INPUT:
  HFLIP_SWAP: []
"""
# tests/test_train_tool.py's SMALL: 64-pixel frames, 4-frame clips, 4 iterations (about 15 s on 2 cores)
SMALL = ["INPUT.SHORT_SIDE_TRAIN", "[64]", "INPUT.SHORT_SIDE_TEST", "64", "INPUT.CLIP_LENGTH", "4",
         "SOLVER.BATCH_SIZE", "2", "SOLVER.MAX_ITER", "4", "SOLVER.WARMUP_ITERS", "2", "SOLVER.CHECKPOINT_PERIOD", "2",
         "SOLVER.FREEZE_2D_AT", "2", "TEST.BATCH_SIZE", "16"]


def write_mp4(path, n):
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, (W, H))
    assert writer.isOpened()
    for k in range(n):
        writer.write(np.full((H, W, 3), 20 * k, np.uint8))
    writer.release()


@pytest.mark.slow
def test_worked_example_videos_to_frames_to_gt(tmp_path):
    """docs/own-data.md's data steps: .mp4 files -> prepare_data.py frames -> prepare_data.py csv -> check."""
    write_mp4(tmp_path / "videos" / "clips" / "a.mp4", 6)
    write_mp4(tmp_path / "videos" / "clips" / "b.mp4", 4)
    data = tmp_path / "datasets" / "mine"
    proc = prepare("frames", tmp_path / "videos", "--out", data)
    assert proc.returncode == 0, proc.stderr
    (tmp_path / "labels.txt").write_text("walk\nwave\n")
    (tmp_path / "split.csv").write_text("video,subset\nclips/a,train\nclips/b,test\n")
    (tmp_path / "ann.csv").write_text("video,frame,x1,y1,x2,y2,action,person_id\n"
                                      "clips/a,1,4,4,30,40,walk,1\nclips/a,2,5,4,31,40,walk,1\n"
                                      "clips/a,2,5,4,31,40,wave,1\nclips/b,4,0,0,64,48,wave,7\n")
    gt_path = data / "mine-GT.pkl"
    args = ["csv", tmp_path / "ann.csv", "--labels", tmp_path / "labels.txt", "--split", tmp_path / "split.csv"]
    proc = prepare(*args, "--frames", data, "--out", gt_path)
    assert proc.returncode == 0, proc.stderr
    assert "csv: 2 videos, 3 tubes, 4 boxes, 2 classes" in proc.stdout
    gt = load_gt(str(gt_path))
    check_gt(gt)
    assert gt["nframes"] == {"clips/a": 6, "clips/b": 4} and gt["resolution"]["clips/a"] == (H, W)
    assert validate_gt(gt, frames_root=str(data)) == []
    proc = prepare("check", gt_path, "--frames", data)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # frame counts from the videos themselves agree with the extracted frames
    proc = prepare(*args, "--videos", tmp_path / "videos", "--out", tmp_path / "from-videos.pkl")
    assert proc.returncode == 0, proc.stderr
    assert load_gt(str(tmp_path / "from-videos.pkl"))["nframes"] == gt["nframes"]
    # a bad row: exit 2, one line naming the file and line; no pickle written
    (tmp_path / "bad.csv").write_text("clips/a,7,4,4,30,40,walk\n")
    proc = prepare("csv", tmp_path / "bad.csv", *args[2:], "--frames", data, "--out", tmp_path / "bad.pkl")
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert "bad.csv line 1: frame 7 beyond the 6 frames of video 'clips/a'" in proc.stderr
    assert not (tmp_path / "bad.pkl").exists()
    # the same boxes from a CVAT export of clips/a (0-based frames), and a bad option: exit 2
    xml = cvat_xml('<track id="1" label="walk">' + box(0, 4) + box(1, 5) + "</track>\n", name="clips/a")
    (tmp_path / "a.xml").write_text(xml)
    proc = prepare("cvat", tmp_path / "a.xml", *args[2:], "--frames", data, "--out", tmp_path / "cvat.pkl")
    assert proc.returncode == 0, proc.stderr
    assert [np.asarray(t)[:, 0].tolist() for t in load_gt(str(tmp_path / "cvat.pkl"))["gttubes"]["clips/a"][0]] \
        == [[1, 2]]
    proc = prepare(*args, "--frames", data, "--max-gap", "0", "--out", tmp_path / "gap.pkl")
    assert proc.returncode == 2 and "max_gap must be at least 1" in proc.stderr, proc.stderr
    # training and a visualization, shortened
    (tmp_path / "mine.yaml").write_text(LEAF.format(root=ROOT))
    out = tmp_path / "out"
    proc = prepare("--config-file", tmp_path / "mine.yaml", *SMALL, "OUTPUT_DIR", out, tool="train_det.py",
                   datasets=tmp_path / "datasets")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert {"model_final.pth", "frame_map.json"} <= set(os.listdir(out))
    proc = prepare("--config-file", out / "config.yaml", "--weights", out / "model_final.pth", "--input",
                   data / "Frames" / "clips" / "b", "--output", tmp_path / "b.mp4", "--gt", gt_path, "--video",
                   "clips/b", "--quiet", tool="visualize_video.py", datasets=tmp_path / "datasets")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert cv2.VideoCapture(str(tmp_path / "b.mp4")).get(cv2.CAP_PROP_FRAME_COUNT) == 4
