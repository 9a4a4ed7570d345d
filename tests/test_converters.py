"""Converters from the original releases: real UCF101-24 and JHMDB files (figures from ../shared/data/README.md),
tiny hand-made releases with hand-computed boxes, and the error cases."""
import os
import zipfile

import cv2
import numpy as np
import pytest
import scipy.io

from s3d_det.data.annotations import validate_gt
from s3d_det.data.converters import (
    JHMDB_CLASSES,
    extract_frames,
    from_yowo_labels,
    jhmdb_from_release,
    ucf24_from_annotations,
)


def tube_rows(gt, videos):
    return [t for v in videos for ts in gt["gttubes"][v].values() for t in ts]


# ---------------------------------------------------------------------------------------------------- UCF101-24
@pytest.fixture(scope="module")
def ucf_files(shared_data):
    folder = shared_data / "ucf101_24"
    return {"mat": str(folder / "finalAnnots.mat"), "pkl": str(folder / "pyannot_with_class_names.pkl"),
            "testlist": str(folder / "testlist01.txt")}


@pytest.fixture(scope="module")
def ucf_gt(ucf_files):
    return ucf24_from_annotations(ucf_files["mat"], ucf_files["testlist"])


@pytest.fixture(scope="module")
def ucf_raw(ucf_files):
    """name -> the raw annot entry, read with scipy directly."""
    annot = scipy.io.loadmat(ucf_files["mat"])["annot"].ravel()
    return {str(e["name"].ravel()[0]): e for e in annot}


def test_ucf24_mat_reproduces_the_known_figures(ucf_gt):
    assert len(ucf_gt["nframes"]) == 3194
    assert len(tube_rows(ucf_gt, ucf_gt["gttubes"])) == 4458
    assert len(ucf_gt["labels"]) == 24
    assert ucf_gt["labels"][0] == "Basketball" and ucf_gt["labels"][23] == "WalkingWithDog"
    test = ucf_gt["test_videos"][0]
    assert len(test) == 910
    assert sum(ucf_gt["nframes"][v] for v in test) == 159289
    rows = tube_rows(ucf_gt, test)
    assert sum(len({int(f) for t in tube_rows(ucf_gt, [v]) for f in t[:, 0]}) for v in test) == 138527
    assert sum(len(t) for t in rows) == 170580
    train = ucf_gt["train_videos"][0]
    assert len(train) == 3194 - 910 and not set(train) & set(test)
    assert set(ucf_gt["resolution"].values()) == {(240, 320)}
    # the release is clean but for two tubes it repeats exactly (kept: the figures above count them)
    assert validate_gt(ucf_gt) == [
        "CliffDiving/v_CliffDiving_g13_c02: tube 2 of label 3 repeats tube 1 exactly",
        "CricketBowling/v_CricketBowling_g02_c04: tube 2 of label 4 repeats tube 1 exactly",
    ]


def test_ucf24_boxes_by_hand(ucf_gt):
    # finalAnnots.mat, Basketball/v_Basketball_g02_c01, tube 1, sf = 27, first box [x y w h] = [197 73 109 165],
    # stored as uint8: x + w = 306 overflows uint8 unless cast first.
    tube = ucf_gt["gttubes"]["Basketball/v_Basketball_g02_c01"][0][0]
    np.testing.assert_array_equal(tube[0], [27, 197, 73, 306, 238])
    # Basketball/v_Basketball_g01_c01: sf 9, ef 52, first box [189 102 47 78].
    tube = ucf_gt["gttubes"]["Basketball/v_Basketball_g01_c01"][0][0]
    assert tube[0, 0] == 9 and tube[-1, 0] == 52 and len(tube) == 44
    np.testing.assert_array_equal(tube[0, 1:], [189, 102, 236, 180])


def test_ucf24_every_tube_matches_the_raw_mat(ucf_gt, ucf_raw):
    checked = 0
    for name in ["Basketball/v_Basketball_g12_c01", "WalkingWithDog/v_WalkingWithDog_g07_c06",
                 "Fencing/v_Fencing_g01_c01", "IceDancing/v_IceDancing_g01_c01"]:
        entry = ucf_raw[name]
        assert ucf_gt["nframes"][name] == int(entry["num_imgs"].item())
        seen = {}  # tubes of one label keep the file's order
        for raw in entry["tubes"].ravel():
            label = int(raw["class"].item()) - 1
            tube = ucf_gt["gttubes"][name][label][seen.setdefault(label, 0)]
            seen[label] += 1
            np.testing.assert_array_equal(tube[:, 0], np.arange(int(raw["sf"].item()), int(raw["ef"].item()) + 1))
            xywh = raw["boxes"].astype(np.float64)
            np.testing.assert_array_equal(tube[:, 1:3], xywh[:, :2])
            np.testing.assert_array_equal(tube[:, 3:5], xywh[:, :2] + xywh[:, 2:])
            checked += 1
    assert checked >= 5  # IceDancing and Fencing videos hold several tubes


def test_ucf24_pyannot_agrees_with_the_mat(ucf_gt, ucf_files):
    pkl = ucf24_from_annotations(ucf_files["pkl"], ucf_files["testlist"])
    for key in ("labels", "nframes", "resolution", "test_videos"):
        assert pkl[key] == ucf_gt[key], key
    assert sorted(pkl["train_videos"][0]) == sorted(ucf_gt["train_videos"][0])
    assert pkl["gttubes"].keys() == ucf_gt["gttubes"].keys()
    for video, per_label in ucf_gt["gttubes"].items():
        assert per_label.keys() == pkl["gttubes"][video].keys(), video
        for label, tubes in per_label.items():
            other = pkl["gttubes"][video][label]
            assert len(tubes) == len(other)
            for a, b in zip(tubes, other):
                np.testing.assert_array_equal(a, b)


def write_finalannots(path, videos):
    """videos: [(name, num_imgs, [(sf, ef, cls, boxes)])] -> a finalAnnots-like .mat."""
    tube_dtype = [("ef", "O"), ("sf", "O"), ("class", "O"), ("boxes", "O")]
    annot = np.empty((1, len(videos)), dtype=[("num_imgs", "O"), ("name", "O"), ("tubes", "O")])
    for i, (name, num_imgs, tubes) in enumerate(videos):
        array = np.empty((1, len(tubes)), dtype=tube_dtype)
        for j, (sf, ef, cls, boxes) in enumerate(tubes):
            array[0, j] = (np.uint8(ef), np.uint8(sf), np.uint8(cls), np.asarray(boxes, dtype=np.uint8))
        annot[0, i] = (np.uint16(num_imgs), name, array)
    scipy.io.savemat(path, {"annot": annot})


def test_ucf24_tiny_mat_and_its_errors(tmp_path):
    mat, testlist = str(tmp_path / "annots.mat"), tmp_path / "test.txt"
    good = ("A/v_A_g01_c01", 5, [(2, 3, 1, [[10, 20, 250, 30], [11, 21, 250, 30]])])
    other = ("B/v_B_g01_c01", 4, [(1, 1, 2, [[1, 1, 2, 2]])])
    write_finalannots(mat, [good, other])
    testlist.write_text("B/v_B_g01_c01.avi\n")
    gt = ucf24_from_annotations(mat, str(testlist))
    assert gt["labels"] == ["A", "B"]
    assert gt["train_videos"] == [["A/v_A_g01_c01"]] and gt["test_videos"] == [["B/v_B_g01_c01"]]
    np.testing.assert_array_equal(gt["gttubes"]["A/v_A_g01_c01"][0][0],
                                  [[2, 10, 20, 260, 50], [3, 11, 21, 261, 51]])

    write_finalannots(mat, [("A/v_A_g01_c01", 5, [(2, 4, 1, [[10, 20, 5, 5]] * 2)]), other])
    with pytest.raises(ValueError, match=r"A/v_A_g01_c01, tube 0 .*frames 2\.\.4 need 3 box rows"):
        ucf24_from_annotations(mat, str(testlist))
    write_finalannots(mat, [("A/v_A_g01_c01", 5, [(5, 6, 1, [[10, 20, 5, 5]] * 2)]), other])
    with pytest.raises(ValueError, match=r"A/v_A_g01_c01, tube 0 .*outside the video's 1\.\.5"):
        ucf24_from_annotations(mat, str(testlist))
    write_finalannots(mat, [good])
    with pytest.raises(ValueError, match="B/v_B_g01_c01"):
        ucf24_from_annotations(mat, str(testlist))


# -------------------------------------------------------------------------------------------------------- JHMDB
def write_jhmdb_release(root, masks, splits):
    """masks: {"class/video": (H, W, T) array}; splits: {"class/video": (s1, s2, s3)} with 1=train 2=test."""
    for name, mask in masks.items():
        folder = root / "puppet_mask" / name
        folder.mkdir(parents=True)
        scipy.io.savemat(str(folder / "puppet_mask.mat"), {"part_mask": mask.astype(np.uint8)})
    (root / "splits").mkdir(exist_ok=True)
    for cls in sorted({n.split("/")[0] for n in splits}):
        for k in range(3):
            lines = [f"{n.split('/')[1]}.avi {s[k]} \n" for n, s in splits.items() if n.startswith(cls + "/")]
            (root / "splits" / f"{cls}_test_split{k + 1}.txt").write_text("".join(lines))


def tiny_masks():
    """Two classes x two videos, 6x8 frames; boxes written out by hand in the test."""
    a = np.zeros((6, 8, 2), np.uint8)
    a[1:3, 2:5, 0] = 1          # rows 1-2, cols 2-4
    a[4, 7, 1] = 3              # one pixel at row 4, col 7
    a[0, 0, 1] = 2              # and one at row 0, col 0
    b = np.zeros((6, 8, 3), np.uint8)
    b[:, 3, :] = 1              # col 3, every row
    c = np.zeros((6, 8, 1), np.uint8)
    c[2:4, 5:7, 0] = 1
    d = np.zeros((6, 8, 2), np.uint8)
    d[5, 1:8, :] = 1
    return {"brush_hair/vid_a": a, "brush_hair/vid_b": b, "catch/vid_c": c, "catch/vid_d": d}


TINY_SPLITS = {"brush_hair/vid_a": (1, 2, 1), "brush_hair/vid_b": (2, 1, 1),
               "catch/vid_c": (1, 1, 2), "catch/vid_d": (2, 2, 1)}


def test_jhmdb_tiny_release(tmp_path):
    write_jhmdb_release(tmp_path, tiny_masks(), TINY_SPLITS)
    gt = jhmdb_from_release(str(tmp_path))
    assert gt["labels"] == list(JHMDB_CLASSES)
    assert gt["nframes"] == {"brush_hair/vid_a": 2, "brush_hair/vid_b": 3, "catch/vid_c": 1, "catch/vid_d": 2}
    assert set(gt["resolution"].values()) == {(6, 8)}
    assert gt["train_videos"] == [["brush_hair/vid_a", "catch/vid_c"], ["brush_hair/vid_b", "catch/vid_c"],
                                  ["brush_hair/vid_a", "brush_hair/vid_b", "catch/vid_d"]]
    assert gt["test_videos"] == [["brush_hair/vid_b", "catch/vid_d"], ["brush_hair/vid_a", "catch/vid_d"],
                                 ["catch/vid_c"]]
    # 1-based pixel indices (the default): x1 = min col + 1, ..., y2 = max row + 1.
    expected = {
        "brush_hair/vid_a": (0, [[1, 3, 2, 5, 3], [2, 1, 1, 8, 5]]),
        "brush_hair/vid_b": (0, [[1, 4, 1, 4, 6], [2, 4, 1, 4, 6], [3, 4, 1, 4, 6]]),
        "catch/vid_c": (1, [[1, 6, 3, 7, 4]]),
        "catch/vid_d": (1, [[1, 2, 6, 8, 6], [2, 2, 6, 8, 6]]),
    }
    for video, (label, rows) in expected.items():
        assert list(gt["gttubes"][video]) == [label]
        (tube,) = gt["gttubes"][video][label]
        np.testing.assert_array_equal(tube, rows)
    assert validate_gt(gt) == []
    zero_based = jhmdb_from_release(str(tmp_path), index_base=0)
    np.testing.assert_array_equal(zero_based["gttubes"]["brush_hair/vid_a"][0][0], [[1, 2, 1, 4, 2], [2, 0, 0, 7, 4]])


def test_jhmdb_errors(tmp_path):
    masks = tiny_masks()
    masks["catch/vid_d"][:, :, 1] = 0
    write_jhmdb_release(tmp_path / "empty", masks, TINY_SPLITS)
    with pytest.raises(ValueError, match=r"catch/vid_d: empty mask on frames \[2\]"):
        jhmdb_from_release(str(tmp_path / "empty"))

    write_jhmdb_release(tmp_path / "nokey", tiny_masks(), TINY_SPLITS)
    scipy.io.savemat(str(tmp_path / "nokey/puppet_mask/catch/vid_c/puppet_mask.mat"), {"mask": np.ones((2, 2))})
    with pytest.raises(ValueError, match=r"catch/vid_c/puppet_mask\.mat: no key 'part_mask'"):
        jhmdb_from_release(str(tmp_path / "nokey"))

    masks = tiny_masks()
    del masks["catch/vid_d"]
    write_jhmdb_release(tmp_path / "nomask", masks, TINY_SPLITS)
    with pytest.raises(ValueError, match=r"catch_test_split1\.txt: vid_d has no mask"):
        jhmdb_from_release(str(tmp_path / "nomask"))

    write_jhmdb_release(tmp_path / "nosplit", tiny_masks(), TINY_SPLITS)
    os.remove(tmp_path / "nosplit/splits/catch_test_split3.txt")
    with pytest.raises(FileNotFoundError, match=r"catch_test_split3\.txt"):
        jhmdb_from_release(str(tmp_path / "nosplit"))


# ------------------------------------------------------------------------------------------------- YOWO labels
def test_yowo_labels_real_jhmdb_zip(shared_data):
    path = shared_data / "jhmdb" / "groundtruths_jhmdb_split1_test.zip"
    gt = from_yowo_labels(str(path), dataset="jhmdb")
    assert len(gt["test_videos"][0]) == 268 and gt["train_videos"] == [[]]
    assert sum(gt["nframes"].values()) == 9126
    for video, per_label in gt["gttubes"].items():  # every frame exactly one box: one tube over 1..n
        assert len(per_label) == 1
        ((label, (tube,)),) = per_label.items()
        assert gt["labels"][label] == video.split("/")[0]
        np.testing.assert_array_equal(tube[:, 0], np.arange(1, gt["nframes"][video] + 1))
    assert validate_gt(gt) == []
    # One file by hand, read with zipfile: a class name with an underscore.
    with zipfile.ZipFile(path) as z:
        member = next(m for m in z.namelist() if m.split("/")[-1].startswith("swing_baseball_"))
        cls, *box = [float(x) for x in z.read(member).split()]
    stem = member.split("/")[-1][: -len("_00000.txt")]
    frame = int(member[-9:-4])
    tube = gt["gttubes"]["swing_baseball/" + stem[len("swing_baseball_"):]][int(cls) - 1][0]
    np.testing.assert_array_equal(tube[frame - 1], [frame, *box])


def write_labels(folder, files):
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)


def test_yowo_labels_tiny_folder(tmp_path):
    # shoot_ball and shoot_bow share a prefix; two actors of class 13 in v1, the second one absent on frame 2.
    write_labels(tmp_path / "labels", {
        "shoot_ball_v1_00001.txt": "13 1 2 30 40\n13 50 60 70 80\n",
        "shoot_ball_v1_00002.txt": "13 2 3 31 41\n",
        "shoot_ball_v1_00003.txt": "13 3 4 32 42\n13 52 62 72 82\n",
        "shoot_bow_x_y_00001.txt": "14 5 6 7 8\n",
        "shoot_bow_x_y_00002.txt": "",
    })
    (tmp_path / "test.txt").write_text("shoot_bow/x_y\n")
    gt = from_yowo_labels(str(tmp_path / "labels"), dataset="jhmdb", testlist=str(tmp_path / "test.txt"))
    assert gt["train_videos"] == [["shoot_ball/v1"]] and gt["test_videos"] == [["shoot_bow/x_y"]]
    assert gt["nframes"] == {"shoot_ball/v1": 3, "shoot_bow/x_y": 2}
    assert gt["resolution"]["shoot_ball/v1"] == (240, 320)
    first, second, third = gt["gttubes"]["shoot_ball/v1"][12]
    np.testing.assert_array_equal(first, [[1, 1, 2, 30, 40], [2, 2, 3, 31, 41], [3, 3, 4, 32, 42]])
    np.testing.assert_array_equal(second, [[1, 50, 60, 70, 80]])
    np.testing.assert_array_equal(third, [[3, 52, 62, 72, 82]])
    np.testing.assert_array_equal(gt["gttubes"]["shoot_bow/x_y"][13][0], [[1, 5, 6, 7, 8]])


def test_yowo_labels_errors(tmp_path):
    write_labels(tmp_path / "unknown", {"dance_v1_00001.txt": "1 1 2 3 4\n"})
    with pytest.raises(ValueError, match=r"dance_v1_00001\.txt: file name does not start with a jhmdb class"):
        from_yowo_labels(str(tmp_path / "unknown"), dataset="jhmdb")
    write_labels(tmp_path / "malformed", {"clap_v1_00001.txt": "3 1 2 3 4\n3 1 2 three 4\n"})
    with pytest.raises(ValueError, match=r"clap_v1_00001\.txt, line 2: expected 'cls x1 y1 x2 y2'"):
        from_yowo_labels(str(tmp_path / "malformed"), dataset="jhmdb")
    write_labels(tmp_path / "badclass", {"clap_v1_00001.txt": "22 1 2 3 4\n"})
    with pytest.raises(ValueError, match=r"clap_v1_00001\.txt, line 1: .*cls in 1\.\.21"):
        from_yowo_labels(str(tmp_path / "badclass"), dataset="jhmdb")
    write_labels(tmp_path / "gaps", {"clap_v1_00001.txt": "3 1 2 3 4\n", "clap_v1_00003.txt": "3 1 2 3 4\n"})
    with pytest.raises(ValueError, match=r"clap/v1 \(frames \[2\] of 1\.\.3\)"):
        from_yowo_labels(str(tmp_path / "gaps"), dataset="jhmdb")
    with pytest.raises(ValueError, match="dataset must be"):
        from_yowo_labels(str(tmp_path / "gaps"), dataset="ava")


# ------------------------------------------------------------------------------------------------------ frames
def write_avi(path, colors, size=(32, 24)):
    """A MJPG .avi with one flat BGR frame per color."""
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, size)
    assert writer.isOpened()
    for color in colors:
        writer.write(np.full((size[1], size[0], 3), color, np.uint8))
    writer.release()


def test_extract_frames_resume_and_errors(tmp_path):
    colors = [(0, 0, 200), (0, 200, 0), (200, 0, 0), (100, 100, 100)]
    write_avi(tmp_path / "videos/run/v1.avi", colors)
    write_avi(tmp_path / "videos/walk/v2.avi", colors[:2])
    out = tmp_path / "out"
    counts = extract_frames(str(tmp_path / "videos"), str(out), progress=False)
    assert counts == {"videos": 2, "extracted": 2, "skipped": 0, "frames": 6}
    folder = out / "Frames/run/v1"
    assert sorted(p.name for p in folder.glob("*.jpg")) == ["00001.jpg", "00002.jpg", "00003.jpg", "00004.jpg"]
    for i, color in enumerate(colors, start=1):
        image = cv2.imread(str(folder / f"{i:05d}.jpg"))
        assert image.shape == (24, 32, 3)
        assert np.abs(image.astype(int).mean(axis=(0, 1)) - color).max() < 8

    os.remove(out / "Frames/walk/v2/00002.jpg")  # partial: redone; complete: skipped
    stamp = os.stat(folder / "00001.jpg").st_mtime_ns
    counts = extract_frames(str(tmp_path / "videos"), str(out), progress=False)
    assert counts == {"videos": 2, "extracted": 1, "skipped": 1, "frames": 6}
    assert (out / "Frames/walk/v2/00002.jpg").is_file()
    assert os.stat(folder / "00001.jpg").st_mtime_ns == stamp
    assert not list((out / "Frames/walk").glob(".tmp_*"))

    (tmp_path / "videos/walk/broken.avi").write_bytes(b"not a video at all")
    with pytest.raises(ValueError, match=r"walk/broken\.avi"):
        extract_frames(str(tmp_path / "videos"), str(out), progress=False)
    assert sorted(os.listdir(out / "Frames/walk")) == ["v2"]  # nothing left of the failed video
    with pytest.raises(FileNotFoundError):
        extract_frames(str(tmp_path / "nothing"), str(out), progress=False)
