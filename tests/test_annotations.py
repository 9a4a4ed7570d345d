"""The GT schema: safe loading (nothing in a pickle runs), saving, validation and accessors."""
import os
import pickle

import numpy as np
import pytest

from s3d_det.checkpoint.io import UnsafePickleError, safe_pickle_load
from s3d_det.data import (
    drop_duplicate_tubes,
    idle_boxes,
    idle_people,
    keyframe_boxes,
    load_gt,
    make_gt,
    save_gt,
    split_videos,
    validate_gt,
)


def small_gt(**overrides):
    fields = dict(
        labels=["jump", "run"],
        nframes={"jump/v1": 6, "run/v2": 4},
        resolution={"jump/v1": (240, 320), "run/v2": (240, 320)},
        gttubes={
            "jump/v1": {0: [[[2, 10, 20, 50, 80], [3, 12, 20, 52, 80]]]},
            "run/v2": {1: [[[1, 0, 0, 10, 10]]], 0: [[[1, 5, 5, 15, 15], [2, 6, 6, 16, 16]]]},
        },
        train_videos=["jump/v1"],
        test_videos=["run/v2"],
    )
    fields.update(overrides)
    return make_gt(**fields)


def test_make_save_load_roundtrip(tmp_path):
    gt = small_gt()
    assert gt["train_videos"] == [["jump/v1"]] and gt["resolution"]["run/v2"] == (240, 320)
    assert gt["gttubes"]["jump/v1"][0][0].dtype == np.float32 and gt["gttubes"]["jump/v1"][0][0].shape == (2, 5)
    path = tmp_path / "gt.pkl"
    save_gt(gt, str(path))
    back = load_gt(str(path))
    assert back["labels"] == gt["labels"] and back["nframes"] == gt["nframes"]
    np.testing.assert_array_equal(back["gttubes"]["run/v2"][0][0], gt["gttubes"]["run/v2"][0][0])
    assert [p.name for p in tmp_path.iterdir()] == ["gt.pkl"]  # no temporary left behind


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_unsafe_pickle_is_refused_before_anything_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"labels": [_RunsCode(marker)]}))
    with pytest.raises(UnsafePickleError, match=r"evil\.pkl.*system"):
        load_gt(str(path))
    assert not marker.exists()
    path.write_bytes(pickle.dumps(pickle.Pickler))  # a class is refused too
    with pytest.raises(UnsafePickleError, match="Pickler"):
        safe_pickle_load(str(path))


def test_python2_byte_strings_load_as_latin1(tmp_path):
    # protocol 2 as Python 2 writes it: {'name': 'caf\xe9'} with SHORT_BINSTRING (8-bit str) opcodes
    path = tmp_path / "py2.pkl"
    path.write_bytes(b"\x80\x02}q\x00U\x04nameq\x01U\x04caf\xe9q\x02s.")
    assert safe_pickle_load(str(path)) == {"name": "caf\u00e9"}


def test_numpy_arrays_and_scalars_load(tmp_path):
    path = tmp_path / "np.pkl"
    payload = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "n": np.int64(7), "s": np.str_("x")}
    path.write_bytes(pickle.dumps(payload, protocol=2))
    back = safe_pickle_load(str(path))
    np.testing.assert_array_equal(back["a"], payload["a"])
    assert back["n"] == 7 and back["s"] == "x"


def test_structure_errors_name_file_and_key(tmp_path):
    path = tmp_path / "bad.pkl"
    path.write_bytes(pickle.dumps({"labels": []}))
    with pytest.raises(ValueError, match=r"bad\.pkl.*missing keys.*train_videos"):
        load_gt(str(path))
    gt = small_gt()
    gt["gttubes"]["jump/v1"][0][0] = np.zeros((2, 4))
    with pytest.raises(ValueError, match=r"gttubes/jump/v1/0\[0\].*\(n, 5\)"):
        save_gt(gt, str(path))
    with pytest.raises(FileNotFoundError, match="nowhere.pkl"):
        load_gt(str(tmp_path / "nowhere.pkl"))
    path.write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match=r"bad\.pkl.*not a readable pickle"):
        load_gt(str(path))


def test_validate_reports_every_problem_with_video_and_frames():
    assert validate_gt(small_gt()) == []
    gt = small_gt(
        nframes={"jump/v1": 6, "run/v2": 2},
        gttubes={
            "jump/v1": {0: [[[2, 10, 20, 50, 80], [4, 12, 20, 52, 80]]],        # 2 -> 4: a gap
                        5: [[[1, 0, 0, 1, 1]]]},                                 # label 5 unknown
            "run/v2": {1: [[[1, 0, 0, 10, 10], [2, 9, 0, 3, 10], [3, 0, 0, 400, 10]]]},  # x2<x1; past the end
        },
        train_videos=["jump/v1", "run/v2"],
    )
    problems = "\n".join(validate_gt(gt))
    assert "jump/v1: tube 0 of label 0: frames not consecutive (2->4)" in problems
    assert "jump/v1: label index 5 outside 0..1" in problems
    assert "run/v2: tube 0 of label 1: frames 3 outside 1..2" in problems
    assert "run/v2: tube 0 of label 1: x2 < x1 at frames 2" in problems
    assert "run/v2: tube 0 of label 1: box outside the 320x240 frame at frames 3" in problems
    assert "run/v2: in both train_videos and test_videos of split 1" in problems


def test_validate_checks_frames_on_disk(tmp_path):
    gt = small_gt()
    folder = tmp_path / "Frames" / "jump" / "v1"
    folder.mkdir(parents=True)
    for i in (1, 2, 3, 5, 6):
        (folder / f"{i:05d}.jpg").write_bytes(b"")
    problems = validate_gt(gt, frames_root=str(tmp_path))
    assert any(p.startswith("jump/v1: frames 4 missing") for p in problems)
    assert any(p.startswith("run/v2: frame folder missing") for p in problems)


def test_duplicate_tubes_are_found_and_can_be_dropped():
    tube = [[1, 0, 0, 10, 10], [2, 0, 0, 10, 10]]
    gt = small_gt(gttubes={"jump/v1": {0: [tube, [[1, 0, 0, 5, 5]], tube]}})
    assert validate_gt(gt) == ["jump/v1: tube 2 of label 0 repeats tube 0 exactly"]
    clean, dropped = drop_duplicate_tubes(gt)
    assert dropped == [("jump/v1", 0, 2, 0)] and len(clean["gttubes"]["jump/v1"][0]) == 2
    assert len(gt["gttubes"]["jump/v1"][0]) == 3  # the input is left as it was


def test_split_videos_and_keyframe_boxes():
    gt = small_gt()
    assert split_videos(gt, 1, "train") == ["jump/v1"]
    with pytest.raises(ValueError, match="splits 1..1"):
        split_videos(gt, 2)
    frames = keyframe_boxes(gt, "run/v2")
    assert sorted(frames) == [1, 2]
    boxes, labels = frames[1]  # label 1's tube first (dict order), then label 0's
    np.testing.assert_array_equal(boxes, [[0, 0, 10, 10], [5, 5, 15, 15]])
    np.testing.assert_array_equal(labels, [1, 0])


def test_idle_boxes_hold_each_tubes_ends():
    gt = small_gt()
    # jump/v1 (6 frames): one tube on frames 2-3; its first box before it, its last box after it
    held = idle_boxes(gt, "jump/v1")
    assert sorted(held) == [1, 4, 5, 6]
    np.testing.assert_array_equal(held[1], [[10, 20, 50, 80]])
    for frame in (4, 5, 6):
        np.testing.assert_array_equal(held[frame], [[12, 20, 52, 80]])
    assert sorted(idle_boxes(gt, "jump/v1", hold=2)) == [1, 4, 5]  # at most 2 frames from the tube
    assert idle_boxes(gt, "jump/v1", hold=0) == {}
    # run/v2 (4 frames): label 1's tube covers frame 1 only, label 0's frames 1-2; order as in gttubes
    held = idle_boxes(gt, "run/v2")
    np.testing.assert_array_equal(held[2], [[0, 0, 10, 10]])
    np.testing.assert_array_equal(held[3], [[0, 0, 10, 10], [6, 6, 16, 16]])
    assert held[3].dtype == np.float32 and sorted(held) == [2, 3, 4]
    with pytest.raises(ValueError, match="hold must be None or at least 0"):
        idle_boxes(gt, "run/v2", hold=-1)
    with pytest.raises(KeyError, match="nope"):
        idle_boxes(gt, "nope")


def test_idle_people_give_each_boxs_distance_from_its_tube():
    gt = small_gt()
    people = idle_people(gt, "jump/v1")  # the tube covers frames 2-3 of 6
    assert {frame: gaps.tolist() for frame, (_, gaps) in people.items()} == {1: [1], 4: [1], 5: [2], 6: [3]}
    np.testing.assert_array_equal(people[6][0], [[12, 20, 52, 80]])
    boxes, gaps = idle_people(gt, "run/v2")[3]  # label 1's tube ends on frame 1, label 0's on frame 2
    np.testing.assert_array_equal(boxes, [[0, 0, 10, 10], [6, 6, 16, 16]])
    assert gaps.tolist() == [2, 1] and gaps.dtype == np.int64
    assert sorted(idle_people(gt, "jump/v1", hold=1)) == [1, 4]


def test_real_pyannot_pickle_loads_safely(shared_data):
    data = safe_pickle_load(str(shared_data / "ucf101_24" / "pyannot_with_class_names.pkl"))
    assert len(data["db"]) == 3194 and len(data["classes"]) == 24


@pytest.mark.parametrize("row, where, expected", [
    ([3, 40, 20, 30, 80], "frame 3", r"x2 < x1 in box \[40, 20, 30, 80\]; expected x1 <= x2"),
    ([3, 12, 90, 52, 80], "frame 3", r"y2 < y1 in box \[12, 90, 52, 80\]; expected y1 <= y2"),
    ([3, 12, 20, 330, 80], "frame 3", r"box \[12, 20, 330, 80\] outside the 320x240 frame; expected 0 <= x1, "
                                      r"x2 <= 320, 0 <= y1, y2 <= 240 \(1 pixel of tolerance\)"),
    ([3, -5, 20, 52, 80], "frame 3", r"box \[-5, 20, 52, 80\] outside the 320x240 frame"),
    ([7, 12, 20, 52, 80], "frame 7", r"frame 7 outside the video's frames 1..6"),
    ([3, np.nan, 20, 52, 80], "frame 3", r"non-finite value in box \[nan, 20, 52, 80\]"),
])
def test_load_gt_refuses_bad_boxes_naming_video_tube_and_frame(tmp_path, row, where, expected):
    """save_gt writes what it is given (check lists it all); any tool loading it gets one line naming the box."""
    tube = np.array([[2, 10, 20, 50, 80], row], dtype=np.float64)
    gt = small_gt(gttubes={"jump/v1": {0: [[[2, 10, 20, 50, 80]], tube]}, "run/v2": {1: [[[1, 0, 0, 10, 10]]]}})
    path = tmp_path / "gt.pkl"
    save_gt(gt, str(path))
    with pytest.raises(ValueError, match=rf"^{path}: video 'jump/v1', tube 1 of label 0 \(jump\), {where}: {expected}"):
        load_gt(str(path))
    assert validate_gt(load_gt(str(path), check_boxes=False))  # what prepare_data.py check loads and lists


def test_load_gt_refuses_an_unknown_label_and_an_empty_tube(tmp_path):
    path = tmp_path / "gt.pkl"
    save_gt(small_gt(gttubes={"jump/v1": {2: [[[2, 10, 20, 50, 80]]]}}), str(path))
    with pytest.raises(ValueError, match=r"video 'jump/v1': label 2 outside 0..1 \(the 2 labels\)"):
        load_gt(str(path))
    save_gt(small_gt(gttubes={"jump/v1": {0: [np.zeros((0, 5))]}}), str(path))
    with pytest.raises(ValueError, match=r"video 'jump/v1', tube 0 of label 0 \(jump\): empty; expected at least one"):
        load_gt(str(path))


def test_load_gt_tolerates_a_pixel_of_overhang_and_one_pixel_boxes(tmp_path):
    """1-based conventions (x2 = x + w with x from 1) reach W + 1; x1 == x2 is a one-pixel-wide box when the
    last pixel is counted (the ``act`` and ``yowo`` protocols' +1)."""
    path = tmp_path / "gt.pkl"
    tube = [[2, 0, 0, 321, 241], [3, -1, -1, 320, 240], [4, 30, 20, 30, 20]]
    save_gt(small_gt(gttubes={"jump/v1": {0: [tube]}}), str(path))
    assert load_gt(str(path))["gttubes"]["jump/v1"][0][0].shape == (3, 5)


def test_real_annotations_load_with_the_box_checks(shared_data, tmp_path):
    """The real UCF101-24 and JHMDB boxes all lie inside their 320x240 frames (x1, y1 from 1, x2 <= 320,
    y2 <= 240): converted, saved and loaded, none is refused."""
    from s3d_det.data.converters import from_yowo_labels, ucf24_from_annotations

    ucf = shared_data / "ucf101_24"
    for gt in (ucf24_from_annotations(str(ucf / "finalAnnots.mat"), str(ucf / "testlist01.txt")),
               from_yowo_labels(str(shared_data / "jhmdb" / "groundtruths_jhmdb_split1_test.zip"), dataset="jhmdb")):
        path = tmp_path / "gt.pkl"
        save_gt(gt, str(path))
        assert len(load_gt(str(path))["gttubes"]) == len(gt["gttubes"])
