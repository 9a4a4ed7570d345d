"""The detections .npz: round trip, and errors that name the file, key and row."""
import numpy as np
import pytest

from s3d_det.data import make_gt
from s3d_det.evaluation import Detections, check_detections, load_detections, save_detections

GT = make_gt(labels=["a", "b"], nframes={"a/v": 5}, resolution={"a/v": (240, 320)}, gttubes={},
             train_videos=[], test_videos=["a/v"])
ROW = [0, 1, 1, 0.9, 10, 10, 20, 30]


def test_round_trip_with_tubes(tmp_path):
    dets = Detections(videos=["a/v"], frame_dets=[ROW, ROW], tubes=[[0, 1, 0.8]],
                      tube_boxes=[[0, 1, 10, 10, 20, 30], [0, 2, 11, 10, 21, 30]])
    path = tmp_path / "d.npz"
    save_detections(str(path), dets)
    back = load_detections(str(path))
    assert back.videos == ["a/v"] and back.frame_dets.dtype == np.float64
    np.testing.assert_array_equal(back.frame_dets, dets.frame_dets)
    np.testing.assert_array_equal(back.tube_boxes, dets.tube_boxes)
    check_detections(back, gt=GT)


@pytest.mark.parametrize("change, message", [
    (lambda r: r.__setitem__(3, np.inf), "frame_dets row 1: non-finite"),
    (lambda r: r.__setitem__(0, 3), "frame_dets row 1: video index 3 outside 0..0"),
    (lambda r: r.__setitem__(2, 2), "frame_dets row 1: label 2 out of range \\(expected 0..1\\)"),
    (lambda r: r.__setitem__(1, 0), "frame_dets row 1: frame 0 is not a 1-based frame number"),
    (lambda r: r.__setitem__(1, 6), "frame_dets row 1: frame 6 past the end of 'a/v' \\(5 frames\\)"),
    (lambda r: r.__setitem__(6, 5), "frame_dets row 1: x2 < x1"),
    (lambda r: r.__setitem__(7, 5), "frame_dets row 1: y2 < y1"),
])
def test_bad_rows_are_named(change, message):
    bad = list(ROW)
    change(bad)
    with pytest.raises(ValueError, match=f"^dets.npz: {message}"):
        check_detections(Detections(videos=["a/v"], frame_dets=[ROW, bad]), gt=GT, source="dets.npz")


def test_unknown_video_and_tube_past_the_end():
    with pytest.raises(ValueError, match="frame_dets row 0: video 'b/w' is not in the ground truth"):
        check_detections(Detections(videos=["b/w"], frame_dets=[ROW]), gt=GT)
    tubes = Detections(videos=["a/v"], frame_dets=[ROW], tubes=[[0, 1, 0.8]], tube_boxes=[[0, 9, 1, 1, 2, 2]])
    with pytest.raises(ValueError, match="tube_boxes row 0: frame 9 past the end of 'a/v'"):
        check_detections(tubes, gt=GT)


def test_files_of_another_format(tmp_path):
    path = tmp_path / "x.npz"
    path.write_bytes(b"plain text")
    with pytest.raises(ValueError, match="x.npz: not a detections .npz"):
        load_detections(str(path))
    np.savez(path, boxes=np.zeros((1, 4)))
    with pytest.raises(ValueError, match="x.npz: missing key 'videos'"):
        load_detections(str(path))
    np.savez(path, videos=np.array(["a/v"]), frame_dets=np.zeros((2, 7)))
    with pytest.raises(ValueError, match=r"x.npz: key 'frame_dets' must be a float array \(n, 8\), got float64 "
                                         r"\(2, 7\)"):
        load_detections(str(path))
    np.savez(path, videos=np.array(["a/v"], dtype=object), frame_dets=np.zeros((0, 8)))
    with pytest.raises(ValueError, match="x.npz: key 'videos' holds Python objects"):  # they need pickle: refused
        load_detections(str(path))
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        load_detections(str(tmp_path / "missing.npz"))


@pytest.mark.parametrize("content, message", [
    (b"", r"/x\.npz: empty file \(0 bytes\); expected an \.npz archive holding videos and frame_dets"),
    (b"frame,score\n1,0.5\n", r"x\.npz: not a detections \.npz: not a zip archive \(it starts with "
                              r"b'frame,score\\n1,0\.'\); expected an \.npz archive holding videos and frame_dets"),
    (b"\x80\x04\x95", r"x\.npz: not a detections \.npz: not a zip archive \(it starts with b'\\x80\\x04\\x95'\)"),
])
def test_empty_and_text_files_are_named_without_numpys_advice(tmp_path, content, message):
    """A zero-byte file was an EOFError traceback; a text or pickle file passed on numpy's advice to set
    allow_pickle, which a detections file never needs."""
    path = tmp_path / "x.npz"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message) as info:
        load_detections(str(path))
    assert "allow_pickle" not in str(info.value) and "\n" not in str(info.value)


def test_keys_of_the_wrong_type_are_named(tmp_path):
    path = tmp_path / "x.npz"
    rows = np.array([ROW, ROW])
    np.save(path.with_suffix(".npy"), rows)
    path.with_suffix(".npy").replace(path)
    with pytest.raises(ValueError, match=r"x\.npz: not a detections \.npz: a single \.npy array"):
        load_detections(str(path))
    np.savez(path, videos=np.array(["a/v"]), frame_dets=rows.astype(np.int64))  # scores truncated to 0
    with pytest.raises(ValueError, match=r"x\.npz: key 'frame_dets' must be a float array \(n, 8\) \(float64 in the "
                                         r"format; integers would truncate the scores\), got int64 \(2, 8\)"):
        load_detections(str(path))
    np.savez(path, videos=np.array(["a/v"], dtype=object), frame_dets=rows)
    with pytest.raises(ValueError, match=r"x\.npz: key 'videos' holds Python objects \(a pickled object array\); "
                                         r"expected an array of strings") as info:
        load_detections(str(path))
    assert "allow_pickle" not in str(info.value)
    np.savez(path, videos=np.array(["a/v"]), frame_dets=rows, tubes=np.array([[0, 1, 0.8]]))
    with pytest.raises(ValueError, match=r"x\.npz: key 'tubes' without 'tube_boxes'; expected both or neither"):
        load_detections(str(path))
    np.savez(path, videos=np.array(["a/v"]), frame_dets=rows, tubes=np.array([[0, 1, 1]]),
             tube_boxes=np.array([[0, 1, 1, 1, 2, 2]], np.float64))
    with pytest.raises(ValueError, match=r"x\.npz: key 'tubes' must be a float array \(n, 3\)"):
        load_detections(str(path))
    np.savez(path, videos=np.array([["a/v"]]), frame_dets=rows)
    with pytest.raises(ValueError, match=r"x\.npz: key 'videos' must be a 1-D array of strings"):
        load_detections(str(path))
    np.savez(path, videos=np.array(["a/v"]), frame_dets=rows.astype(np.float32))  # float32 is a float: accepted
    assert load_detections(str(path)).frame_dets.dtype == np.float64
