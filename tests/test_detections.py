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


# -- FrameDetections: the named fields in code, the (N, 8) rows in the file ----------------------------------------
THREE = np.array([  # video_index, frame, label, score, x1, y1, x2, y2: the file's layout, written out by number
    [0, 3, 1, 0.75, 10.5, 20, 30.25, 40],
    [1, 1, 0, 0.5, 0, 0, 5, 5],
    [0, 2, 2, 0.9, 1, 2, 3, 4],
])


def assert_three(d):
    """Every field of THREE, by value and type."""
    assert len(d) == 3
    assert d.video.dtype == d.frame.dtype == d.label.dtype == np.int64
    assert d.score.dtype == d.boxes.dtype == np.float64
    assert d.video.tolist() == [0, 1, 0] and d.frame.tolist() == [3, 1, 2] and d.label.tolist() == [1, 0, 2]
    assert d.score.tolist() == [0.75, 0.5, 0.9]
    assert d.boxes.tolist() == [[10.5, 20, 30.25, 40], [0, 0, 5, 5], [1, 2, 3, 4]]


def test_frame_detections_rows_type_npz_round_trip(tmp_path):
    from s3d_det.evaluation import FrameDetections

    d = FrameDetections.from_rows(THREE)
    assert_three(d)
    rows = d.to_rows()
    assert rows.dtype == np.float64 and rows.shape == (3, 8)
    np.testing.assert_array_equal(rows, THREE)
    built = FrameDetections(video=[0, 1, 0], frame=[3, 1, 2], label=[1, 0, 2], score=[0.75, 0.5, 0.9],
                            boxes=[[10.5, 20, 30.25, 40], [0, 0, 5, 5], [1, 2, 3, 4]])
    assert_three(built)
    # to a file from the type and from the rows: the same arrays, byte for byte, under the same keys
    save_detections(str(tmp_path / "type.npz"), Detections(videos=["a/v", "b/w"], frame_dets=built))
    save_detections(str(tmp_path / "rows.npz"), Detections(videos=["a/v", "b/w"], frame_dets=THREE))
    import zipfile

    with zipfile.ZipFile(tmp_path / "type.npz") as a, zipfile.ZipFile(tmp_path / "rows.npz") as b:
        assert sorted(a.namelist()) == sorted(b.namelist()) == ["frame_dets.npy", "videos.npy"]
        assert all(a.read(name) == b.read(name) for name in a.namelist())
    back = load_detections(str(tmp_path / "type.npz"))
    assert back.videos == ["a/v", "b/w"]
    np.testing.assert_array_equal(back.frame_dets, THREE)
    assert_three(back.per_frame)


def test_frame_detections_select_concat_sort():
    from s3d_det.evaluation import FrameDetections

    d = FrameDetections.from_rows(THREE)
    s = d.sorted_by_frame()  # video, frame, then score, highest first
    assert s.video.tolist() == [0, 0, 1] and s.frame.tolist() == [2, 3, 1] and s.score.tolist() == [0.9, 0.75, 0.5]
    assert s.boxes.tolist() == [[1, 2, 3, 4], [10.5, 20, 30.25, 40], [0, 0, 5, 5]]
    tie = FrameDetections.from_rows([[0, 1, 0, 0.5, 1, 1, 2, 2], [0, 1, 1, 0.5, 3, 3, 4, 4]]).sorted_by_frame()
    assert tie.label.tolist() == [0, 1]  # ties keep their order
    picked = d.select(d.score > 0.6)
    assert picked.frame.tolist() == [3, 2] and picked.label.tolist() == [1, 2]
    assert d.select(np.array([2, 0])).score.tolist() == [0.9, 0.75]
    both = FrameDetections.concat([d, d.select(slice(1, 2))])
    assert both.video.tolist() == [0, 1, 0, 1] and both.boxes[3].tolist() == [0, 0, 5, 5]
    assert len(FrameDetections.concat([])) == 0 and FrameDetections.empty().to_rows().shape == (0, 8)
    np.testing.assert_array_equal(d.to_rows(), THREE)  # never modified in place


def test_frame_detections_bad_input():
    from s3d_det.evaluation import FrameDetections

    with pytest.raises(ValueError, match=r"detection rows must be an array \(N, 8\), got shape \(3, 7\)"):
        FrameDetections.from_rows(THREE[:, :7])
    bad = THREE.copy()
    bad[2, 1] = 2.5
    with pytest.raises(ValueError, match="FrameDetections.frame row 2: 2.5 is not an integer"):
        FrameDetections.from_rows(bad)
    bad[2, 1], bad[1, 0] = 2, np.nan
    with pytest.raises(ValueError, match="FrameDetections.video row 1: nan is not an integer"):
        FrameDetections.from_rows(bad)
    with pytest.raises(ValueError, match="fields disagree in length: video 2, frame 3"):
        FrameDetections(video=[0, 0], frame=[1, 2, 3], label=[0, 0, 0], score=[1, 1, 1], boxes=np.zeros((3, 4)))


def test_metrics_take_rows_or_frame_detections_alike():
    from s3d_det.evaluation import FrameDetections, frame_ap, link_tubes

    gt = make_gt(labels=["a", "b", "c"], nframes={"a/v": 5, "b/w": 5},
                 resolution={"a/v": (240, 320), "b/w": (240, 320)},
                 gttubes={"a/v": {1: [np.array([[3, 10, 20, 30, 40]])]}}, train_videos=[], test_videos=["a/v", "b/w"])
    d = FrameDetections.from_rows(THREE)
    assert frame_ap(gt, ["a/v", "b/w"], d).to_dict() == frame_ap(gt, ["a/v", "b/w"], THREE).to_dict()
    assert frame_ap(gt, ["a/v", "b/w"], d).ap["b"] == pytest.approx(100.0)
    for x, y in zip(link_tubes(["a/v", "b/w"], d, min_length=1), link_tubes(["a/v", "b/w"], THREE, min_length=1)):
        np.testing.assert_array_equal(x, y)
