"""Optical flow: computing it on a texture of known motion, the I3D JPEG mapping, extract_flow's files, resume and
errors, the flow sources, and tools/prepare_data.py flow. TV-L1 tests skip unless this OpenCV has cv2.optflow or
S3D_DET_OPENCV_CONTRIB names a folder holding opencv-contrib (see docs/flow.md)."""
import json
import os
import pickle
import shutil

import cv2
import numpy as np
import pytest
from test_prepare_data import prepare

from s3d_det.data.errors import DataError
from s3d_det.data.flow import (
    CONTRIB_ENV,
    BroxFlowSource,
    FlowFolderSource,
    compute_flow,
    extract_flow,
    flow_to_uint8,
    has_tvl1,
    uint8_to_flow,
)

MOTION = (3, -2)  # (dx, dy) px per frame: the texture moves right and up
CONTRIB = os.environ.get(CONTRIB_ENV)
TVL1 = has_tvl1() or bool(CONTRIB and os.path.isfile(os.path.join(CONTRIB, "cv2", "__init__.py")))
needs_tvl1 = pytest.mark.skipif(
    not TVL1, reason=f"TV-L1 needs cv2.optflow: this OpenCV lacks it and {CONTRIB_ENV} names no opencv-contrib folder "
                     f"(pip install --no-deps --target DIR 'opencv-contrib-python-headless<5')")
ALGORITHMS = [pytest.param("tvl1", marks=needs_tvl1), "dis"]


def texture(seed=0, shape=(120, 160)):
    """Seeded noise smoothed (sigma 2 px) so that flow is well defined everywhere, stretched to 0..255."""
    noise = np.random.default_rng(seed).integers(0, 256, shape).astype(np.float32)
    smooth = cv2.GaussianBlur(noise, (0, 0), 2)
    return cv2.normalize(smooth, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)


def moving_frames(n, size=(48, 64), motion=MOTION, seed=0):
    """n crops of one texture; the content moves by ``motion`` (dx, dy) px from each frame to the next."""
    tex = texture(seed)
    h, w = size
    dx, dy = motion
    y0, x0 = 30, 40
    return [np.ascontiguousarray(tex[y0 - dy * k:y0 - dy * k + h, x0 - dx * k:x0 - dx * k + w]) for k in range(n)]


def write_video(root, name, frames, ext="jpg"):
    folder = root / "Frames" / name
    folder.mkdir(parents=True)
    for k, frame in enumerate(frames, start=1):
        assert cv2.imwrite(str(folder / f"{k:05d}.{ext}"), frame)
    return folder


def interior_median(flow, margin=10):
    return np.median(flow[margin:-margin, margin:-margin].reshape(-1, 2), axis=0)


# ------------------------------------------------------------------------------------------------- computing
def test_compute_flow_dis_on_a_known_shift():
    a, b = moving_frames(2)
    flow = compute_flow(a, b, "dis")
    assert flow.shape == (48, 64, 2) and flow.dtype == np.float32
    assert np.abs(interior_median(flow) - MOTION).max() < 0.5


@pytest.mark.skipif(not has_tvl1(), reason="this process's cv2 has no cv2.optflow (TV-L1 is tested through "
                                           "extract_flow's workers when S3D_DET_OPENCV_CONTRIB is set)")
def test_compute_flow_tvl1_in_process():
    a, b = moving_frames(2)
    assert np.abs(interior_median(compute_flow(a, b, "tvl1")) - MOTION).max() < 0.5


def test_compute_flow_bad_input():
    a, b = moving_frames(2)
    with pytest.raises(ValueError, match="different sizes"):
        compute_flow(a, b[:40], "dis")
    with pytest.raises(ValueError, match="grayscale"):
        compute_flow(np.dstack([a] * 3), np.dstack([b] * 3), "dis")
    with pytest.raises(ValueError, match="unknown optical-flow algorithm 'brox'"):
        compute_flow(a, b, "brox")


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_flow_extracted_and_read_back_has_the_motion(tmp_path, algorithm):
    """Frames -> extract_flow (JPEG mapping) -> FlowFolderSource -> uint8_to_flow: (+3, -2) px in the interior."""
    write_video(tmp_path / "frames", "walk/v1", moving_frames(3))
    counts = extract_flow(str(tmp_path / "frames"), str(tmp_path / "flow"), algorithm=algorithm, progress=False,
                          opencv_contrib=CONTRIB)
    assert counts == {"videos": 1, "computed": 1, "skipped": 0, "flow_frames": 2}
    source = FlowFolderSource(str(tmp_path / "flow/walk/v1"))
    assert source.num_frames == 3 and source.channels == 2
    for frame, q in source.read([1, 2]).items():
        assert q.shape == (48, 64, 2) and q.dtype == np.uint8
        flow = uint8_to_flow(q, 20.0)
        assert np.abs(interior_median(flow) - MOTION).max() < 0.5, (frame, interior_median(flow))


# --------------------------------------------------------------------------------------------------- mapping
def test_mapping_hand_values():
    f = np.array([-20, 20, 0, 35, -35, 3, -2], np.float32)
    # (f + 20) * 255 / 40: 0, 255, 127.5 -> 128 (halves up), clipped, clipped, 146.625 -> 147, 114.75 -> 115
    assert flow_to_uint8(f, 20).tolist() == [0, 255, 128, 255, 0, 147, 115]
    assert flow_to_uint8(np.array([5.0]), 10).tolist() == [191]  # 15 * 12.75 = 191.25
    back = uint8_to_flow(np.array([0, 255, 128], np.uint8), 20)
    assert back.dtype == np.float32
    np.testing.assert_allclose(back, [-20, 20, 20 / 255], atol=1e-5)  # 128 * 40 / 255 - 20
    # hflip in JPEG space is 255 - q only up to rounding: zero flow comes back as -bound/255
    np.testing.assert_allclose(uint8_to_flow(255 - flow_to_uint8(np.zeros(1), 20), 20), [-20 / 255], atol=1e-5)


def test_mapping_round_trip_and_errors():
    f = np.linspace(-20, 20, 10001, dtype=np.float32)
    q = flow_to_uint8(f, 20)
    assert q.dtype == np.uint8 and q.shape == f.shape
    assert np.abs(uint8_to_flow(q, 20) - f).max() <= 20 / 255 + 1e-5
    with pytest.raises(ValueError, match="non-finite"):
        flow_to_uint8(np.array([np.nan]), 20)
    with pytest.raises(ValueError, match="positive"):
        flow_to_uint8(f, 0)


# ------------------------------------------------------------------------------------------------ extraction
def listing(folder):
    return sorted(os.listdir(folder))


def test_extract_flow_files_resume_and_incomplete(tmp_path):
    frames, out = tmp_path / "frames", tmp_path / "flow"
    write_video(frames, "run/v1", moving_frames(4))
    write_video(frames, "walk/v2", moving_frames(3, seed=1))
    counts = extract_flow(str(frames), str(out), algorithm="dis", progress=False)
    assert counts == {"videos": 2, "computed": 2, "skipped": 0, "flow_frames": 5}
    assert listing(out / "run/v1") == [".done", "x", "y"]
    assert listing(out / "run/v1/x") == listing(out / "run/v1/y") == ["00001.jpg", "00002.jpg", "00003.jpg"]
    assert listing(out / "walk/v2/x") == ["00001.jpg", "00002.jpg"]
    assert cv2.imread(str(out / "run/v1/x/00001.jpg"), cv2.IMREAD_UNCHANGED).shape == (48, 64)  # grayscale

    stamp = os.stat(out / "run/v1/x/00001.jpg").st_mtime_ns
    os.remove(out / "walk/v2/y/00002.jpg")  # damaged: redone; complete: skipped
    counts = extract_flow(str(frames), str(out), algorithm="dis", progress=False)
    assert counts == {"videos": 2, "computed": 1, "skipped": 1, "flow_frames": 5}
    assert os.stat(out / "run/v1/x/00001.jpg").st_mtime_ns == stamp
    assert (out / "walk/v2/y/00002.jpg").is_file()

    # an interrupted run leaves a half temp folder: cleared when that video is done again
    os.remove(out / "walk/v2/x/00001.jpg")
    (out / "walk/.tmp_v2/x").mkdir(parents=True)
    counts = extract_flow(str(frames), str(out), algorithm="dis", progress=False)
    assert counts["computed"] == 1 and counts["skipped"] == 1
    done = json.loads((out / "walk/v2/.done").read_text())
    assert listing(out / "walk") == ["v2"] and done["flows"] == 2 and done["algorithm"] == "dis"

    # a folder without .done was not made by extract_flow (the user's, another tool's): refused, left as it is
    os.remove(out / "walk/v2/.done")
    with pytest.raises(ValueError, match=r"video walk/v2: .*walk/v2 exists but extract_flow did not write it"):
        extract_flow(str(frames), str(out), algorithm="dis", progress=False)
    assert listing(out / "walk/v2") == ["x", "y"]
    (out / "walk/v2/.done").write_text(json.dumps(done))

    # frames extracted again with another count: the flow is stale, redone
    assert cv2.imwrite(str(frames / "Frames/walk/v2/00004.jpg"), moving_frames(4, seed=1)[3])
    counts = extract_flow(str(frames), str(out), algorithm="dis", progress=False)
    assert counts == {"videos": 2, "computed": 1, "skipped": 1, "flow_frames": 6}

    # frames extracted again with the same count (the first frame rewritten), or another bound: redone
    first = frames / "Frames/run/v1/00001.jpg"
    assert cv2.imwrite(str(first), moving_frames(4, seed=5)[0])
    os.utime(first, ns=(first.stat().st_atime_ns, first.stat().st_mtime_ns + 10 ** 9))
    counts = extract_flow(str(frames), str(out), algorithm="dis", progress=False)
    assert counts == {"videos": 2, "computed": 1, "skipped": 1, "flow_frames": 6}
    counts = extract_flow(str(frames), str(out), algorithm="dis", bound=10.0, progress=False)
    assert counts["computed"] == 2 and json.loads((out / "run/v1/.done").read_text())["bound"] == 10.0


def truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


@pytest.mark.parametrize("workers", [1, 2])
def test_extract_flow_bad_frames_name_video_and_frame(tmp_path, workers):
    frames, out = tmp_path / "frames", tmp_path / "flow"
    write_video(frames, "run/v1", moving_frames(3))
    folder = write_video(frames, "run/v2", moving_frames(3))
    truncate(folder / "00002.jpg")
    with pytest.raises(DataError) as error:
        extract_flow(str(frames), str(out), algorithm="dis", workers=workers, progress=False)
    message = str(error.value)
    assert "\n" not in message and "run/v2" in message and "00002.jpg" in message and "truncated JPEG" in message
    assert not (out / "run/v2").exists() and not (out / "run/.tmp_v2").exists()  # nothing half-written

    shutil.rmtree(folder)
    folder = write_video(frames, "run/v2", moving_frames(3))
    assert cv2.imwrite(str(folder / "00003.jpg"), moving_frames(1, size=(40, 64))[0])
    with pytest.raises(DataError, match=r"run/v2.*00003\.jpg is 40x64.*expected 48x64"):
        extract_flow(str(frames), str(out), algorithm="dis", workers=workers, progress=False)


def test_extract_flow_input_errors(tmp_path):
    frames = tmp_path / "frames"
    write_video(frames, "run/v1", moving_frames(1))
    with pytest.raises(DataError, match=r"video run/v1: .*holds 1 frame; expected at least 2"):
        extract_flow(str(frames), str(tmp_path / "flow"), algorithm="dis", progress=False)
    with pytest.raises(ValueError, match="inside"):
        extract_flow(str(frames), str(frames / "Frames/flow"), algorithm="dis", progress=False)
    with pytest.raises(FileNotFoundError, match="Frames"):
        extract_flow(str(tmp_path / "nothing"), str(tmp_path / "flow"), algorithm="dis", progress=False)
    with pytest.raises(ValueError, match="unknown optical-flow algorithm"):
        extract_flow(str(frames), str(tmp_path / "flow"), algorithm="farneback", progress=False)
    (frames / "Frames/run/v1/00001.jpg").unlink()
    (frames / "Frames/run/v1/00002.jpg").write_bytes(b"")
    with pytest.raises(DataError, match=r"video run/v1: .*00001\.jpg is missing"):
        extract_flow(str(frames), str(tmp_path / "flow"), algorithm="dis", progress=False)


@pytest.mark.skipif(has_tvl1(), reason="this OpenCV has cv2.optflow: no contrib folder is needed or looked at")
def test_tvl1_unavailable_says_the_pip_command(tmp_path, monkeypatch):
    frames = tmp_path / "frames"
    write_video(frames, "run/v1", moving_frames(2))
    monkeypatch.delenv(CONTRIB_ENV, raising=False)
    with pytest.raises(ValueError, match=r'pip install --no-deps --target DIR "opencv-contrib-python-headless<5"'):
        extract_flow(str(frames), str(tmp_path / "flow"), progress=False)
    with pytest.raises(FileNotFoundError, match=r"no cv2 package there.*--target .*empty"):
        extract_flow(str(frames), str(tmp_path / "flow"), progress=False, opencv_contrib=str(tmp_path / "empty"))


# --------------------------------------------------------------------------------------------------- sources
def write_flow_video(folder, values, size=(24, 32)):
    """Our layout by hand: flow frame k = a constant image per axis, values[k-1] = (qx, qy)."""
    for axis in ("x", "y"):
        (folder / axis).mkdir(parents=True)
    for k, (qx, qy) in enumerate(values, start=1):
        assert cv2.imwrite(str(folder / "x" / f"{k:05d}.jpg"), np.full(size, qx, np.uint8))
        assert cv2.imwrite(str(folder / "y" / f"{k:05d}.jpg"), np.full(size, qy, np.uint8))


def test_flow_folder_source(tmp_path):
    folder = tmp_path / "walk/v1"
    write_flow_video(folder, [(10, 200), (50, 60)])
    source = FlowFolderSource(str(folder))
    assert source.num_frames == 3 and source.size == (24, 32) and source.channels == 2
    frames = pickle.loads(pickle.dumps(source)).read([1, 2, 3])
    assert all(a.shape == (24, 32, 2) and a.dtype == np.uint8 for a in frames.values())
    assert np.abs(frames[1].astype(int) - [10, 200]).max() <= 1
    assert np.abs(frames[2].astype(int) - [50, 60]).max() <= 1
    np.testing.assert_array_equal(frames[3], frames[2])  # the last RGB frame gets the flow before it
    assert FlowFolderSource(str(folder), nframes=3).num_frames == 3
    with pytest.raises(DataError, match="holds 2 flow frames; expected 4"):
        FlowFolderSource(str(folder), nframes=5).num_frames
    with pytest.raises(ValueError, match="out of range"):
        source.read([4])

    truncate(folder / "y/00002.jpg")
    with pytest.raises(DataError, match=r"y/00002\.jpg: truncated JPEG \(flow frame 2\)"):
        FlowFolderSource(str(folder)).read([3])
    (folder / "y/00002.jpg").unlink()
    with pytest.raises(DataError, match="x/ holds 2 flow frames but y/ holds 1"):
        FlowFolderSource(str(folder)).num_frames
    with pytest.raises(FileNotFoundError, match="x/ and <video>/y/"):
        FlowFolderSource(str(tmp_path / "nothing")).num_frames


def test_brox_flow_source(tmp_path):
    folder = tmp_path / "FlowBrox04/walk/v1"
    folder.mkdir(parents=True)
    colors = [(0, 0, 200), (0, 200, 0), (200, 0, 0)]  # BGR as written
    for k, color in enumerate(colors, start=1):
        assert cv2.imwrite(str(folder / f"{k:05d}.jpg"), np.full((24, 32, 3), color, np.uint8))
    source = BroxFlowSource(str(folder))
    assert source.num_frames == 3 and source.channels == 3
    frames = source.read([1, 2, 3])
    assert frames[1].shape == (24, 32, 3) and frames[1].dtype == np.uint8
    assert np.abs(frames[1].astype(int) - [200, 0, 0]).max() <= 2  # RGB: channel 0 is the red one written
    assert np.abs(frames[3].astype(int) - [0, 0, 200]).max() <= 2
    shorter = BroxFlowSource(str(folder), nframes=4)  # a release with N - 1 files: the last frame reuses file N - 1
    assert shorter.num_frames == 4
    np.testing.assert_array_equal(shorter.read([4])[4], frames[3])
    with pytest.raises(DataError, match="holds 3 flow frames; expected 5"):
        BroxFlowSource(str(folder), nframes=6).num_frames
    truncate(folder / "00002.jpg")
    with pytest.raises(DataError, match=r"00002\.jpg: truncated JPEG"):
        BroxFlowSource(str(folder)).read([2])


# ------------------------------------------------------------------------------------------------------ tool
@pytest.mark.slow
def test_flow_command(tmp_path):
    frames, out = tmp_path / "frames", tmp_path / "flow"
    write_video(frames, "run/v1", moving_frames(3))
    proc = prepare("flow", frames, "--out", out, "--algorithm", "dis", "--workers", "1")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == f"1 videos (1 computed, 0 already complete), 2 flow frames (dis, " \
                                                   f"bound 20 px) in {out}"
    assert listing(out / "run/v1/x") == ["00001.jpg", "00002.jpg"]
    for args in (["--out", frames / "Frames/flow"], ["--out", out, "--bound", "0"], ["--out", out, "--workers", "0"]):
        proc = prepare("flow", frames, "--algorithm", "dis", *args)
        assert proc.returncode == 2 and proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr
    proc = prepare("flow", tmp_path / "nothing", "--out", out, "--algorithm", "dis")
    assert proc.returncode == 2 and "Frames" in proc.stderr and proc.stderr.count("\n") == 1


def test_bench_flow_runs_quick(capsys, monkeypatch):
    """benchmarks/bench_flow.py: its frames move by the known motion, and a quick DIS run prints the table."""
    import importlib

    # importable by name: the spawned process it times in unpickles its function from the module
    monkeypatch.syspath_prepend(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
    bench = importlib.import_module("bench_flow")
    a, b = bench.moving_frames(2, (48, 64))
    np.testing.assert_array_equal(b[:-2, 3:], a[2:, :-3])  # content at (x, y) moves to (x + 3, y - 2)
    assert bench.main(["--quick", "--algorithms", "dis", "--size", "64x48"]) == 0
    table = capsys.readouterr().out
    assert "64x48" in table and "\ndis " in table


def test_opencv_failures_are_one_line_naming_the_video(tmp_path):
    """DIS refuses frames smaller than its patches with a cv2.error: a DataError naming the video, no traceback."""
    write_video(tmp_path / "frames", "tiny/v1", moving_frames(3, size=(7, 7)))
    with pytest.raises(DataError, match="video tiny/v1: .*"):
        extract_flow(str(tmp_path / "frames"), str(tmp_path / "flow"), algorithm="dis", progress=False)
    assert not (tmp_path / "flow" / "tiny" / "v1").exists()
