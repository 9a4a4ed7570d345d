"""Streaming inference (s3d_det.engine.streaming, tools/demo.py) and online tube linking (OnlineLinker): the
delay to clip placement rule by hand, the stream's detections against the offline shared mode with the same clip
placement, results exactly D frames late, bounded memory, the demo on a synthetic .mp4, and the online linker
against link_tubes. Tiny random models, small frames, seeded, CPU-only."""
from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from test_inference import H, MemorySource, tiny_detector

from s3d_det.engine.inference import VideoDetector
from s3d_det.engine.streaming import StreamingDetector, centred_delay, clip_placement
from s3d_det.evaluation.detections import FrameDetections
from s3d_det.evaluation.linking import LinkingConfig, OnlineLinker, link_tubes

pytestmark = pytest.mark.usefixtures("one_thread")
ROOT = Path(__file__).resolve().parents[1]
INPUT = dict(clip_length=4, clip_stride=2, short_side=H, size_divisible=32)


@pytest.fixture(scope="module")
def model():
    model = tiny_detector("s3dg")
    with torch.no_grad():  # scores far apart: a random head's are all about 1 / 4, and float rounding reorders ties
        model.roi_head.box_predictor.cls_score.weight.mul_(40)
    return model


def test_clip_placement_by_hand():
    # T = 4 at stride 2, feature stride 2: the centred clip reaches 1 position (2 frames) past the keyframe,
    # the next anchor is up to 1 frame ahead
    kw = dict(clip_length=4, clip_stride=2, feature_stride=2)
    assert centred_delay(**kw) == 3
    assert [(p.position, p.interpolation) for p in (clip_placement(d, **kw) for d in range(6))] == [
        (3, "previous"), (3, "linear"), (3, "linear"), (2, "linear"), (2, "linear"), (2, "linear")]
    # T = 16 at stride 1, feature stride 4 (mixed_4f): centred at 3 + 7 = 10
    kw = dict(clip_length=16, clip_stride=1, feature_stride=4)
    assert centred_delay(**kw) == 10
    assert clip_placement(0, **kw).position == 15 and clip_placement(0, **kw).interpolation == "previous"
    assert clip_placement(2, **kw).position == 13 and clip_placement(2, **kw).interpolation == "previous"
    assert clip_placement(5, **kw).position == 13 and clip_placement(5, **kw).interpolation == "linear"
    assert clip_placement(10, **kw).position == 8 and clip_placement(99, **kw).position == 8
    with pytest.raises(ValueError, match="delay"):
        clip_placement(-1, **kw)


def stream(model, images, **kwargs):
    """Pushes ``images`` (1-based dict) one at a time; returns the detector, the results and, per push, the frames
    that came out."""
    detector = StreamingDetector(model, **INPUT, **kwargs)
    results, out_at = [], []
    for f in range(1, len(images) + 1):
        got = detector.push(images[f])
        out_at.append([r.frame for r in got])
        results += got
    results += detector.finish()
    return detector, results, out_at


@pytest.mark.parametrize("delay,boundary", [(None, "repeat"), (0, "repeat"), (1, "repeat"), (2, "reflect"),
                                            (7, "reflect")])
def test_stream_equals_offline_shared_mode_with_its_placement(model, delay, boundary):
    n = 23
    images = MemorySource(n).read(list(range(1, n + 1)))
    detector, results, out_at = stream(model, images, delay=delay, boundary=boundary)
    d = detector.delay
    assert d == (3 if delay is None else delay)
    assert [r.frame for r in results] == list(range(1, n + 1))  # one result per frame, in order
    if boundary == "repeat":  # frame k - D comes out when frame k arrives, exactly
        assert out_at == [[k - d] if k > d else [] for k in range(1, n + 1)]
    else:  # a reflected clip start reads frames after the first: never earlier than D, in order
        assert all(f <= k - d for k, frames in enumerate(out_at, 1) for f in frames)
    placement = detector.placement
    offline = VideoDetector(model, **INPUT, boundary=boundary, batch_size=4, position=placement.position,
                            interpolation=placement.interpolation)(MemorySource(n)).to_rows()
    online = FrameDetections.concat([r.detections for r in results]).sorted_by_frame().to_rows()
    assert len(offline) > n
    assert online.shape == offline.shape
    np.testing.assert_allclose(online, offline, rtol=0, atol=1e-4)
    assert detector.stats["forwards_3d"] == -(-(n - 1) // 2) + 1 + (placement.interpolation == "linear" and n % 2 == 0)


def test_causal_stream_differs_from_centred(model):
    """The placement matters: D = 0 gives other detections than the centred clips (else the test above could not
    tell placements apart)."""
    n = 15
    images = MemorySource(n).read(list(range(1, n + 1)))
    rows = [FrameDetections.concat([r.detections for r in stream(model, images, delay=d)[1]]).to_rows()
            for d in (0, 3)]
    assert rows[0].shape != rows[1].shape or np.abs(rows[0] - rows[1]).max() > 1e-3


def test_memory_is_bounded_on_a_long_stream(model):
    detector = StreamingDetector(model, **INPUT)
    source = MemorySource(120)
    for f in range(1, 121):
        detector.push(source.read([f])[f])
    detector.finish()
    # the clip (T = 4 at stride 2: 7 frames) and the D = 3 frames owed, not the stream
    assert detector.stats["max_frames_held"] <= 12
    assert len(detector._anchors) <= 2


def test_bad_frames_are_one_line_errors(model):
    detector = StreamingDetector(model, **INPUT)
    detector.push(np.zeros((H, 64, 3), np.uint8))
    with pytest.raises(ValueError, match=r"stream frame 2 is 40x64 \(h x w\), the first 48x64"):
        detector.push(np.zeros((40, 64, 3), np.uint8))
    with pytest.raises(ValueError, match="stream frame 2: expected \\(H, W, 3\\) uint8 RGB, got float32"):
        detector.push(np.zeros((H, 64, 3), np.float32))
    detector.finish()
    with pytest.raises(ValueError, match="the stream has ended"):
        detector.push(np.zeros((H, 64, 3), np.uint8))


# -- online linking ------------------------------------------------------------------------------------------------
def test_online_linker_by_hand():
    """Two people of one action crossing paths, a third detection of another action; frame 3 is missing."""
    def rows(frame, *dets):
        return np.array([[0, frame, label, score, x, 0, x + 10, 20] for label, score, x in dets], float)

    linker = OnlineLinker(LinkingConfig(nms_iou=None, link_iou=0.2, gap=1))
    assert linker.update(1, rows(1, (0, 0.9, 0), (0, 0.5, 30), (1, 0.7, 0))).tolist() == [0, 1, 2]
    # the 0.9 tube (mean score first) takes the box it overlaps most, the other its own
    assert linker.update(2, rows(2, (0, 0.4, 28), (0, 0.8, 2))).tolist() == [1, 0]
    # frame 4: tube 0 missed one frame (gap 1): extended; action 1's tube missed two (2, 3): a new tube
    assert linker.update(4, rows(4, (0, 0.6, 4), (1, 0.5, 1))).tolist() == [0, 3]
    # frame 7: tube 0 missed frames 5-6: closed, a new one starts
    assert linker.update(7, rows(7, (0, 0.6, 5))).tolist() == [4]
    with pytest.raises(ValueError, match="frame 7 comes after frame 7"):
        linker.update(7, rows(7))
    with pytest.raises(ValueError, match=r"detections of frame\(s\) \[9\] given as frame 8's"):
        linker.update(8, rows(9, (0, 0.5, 0)))


@pytest.mark.parametrize("config", [LinkingConfig(), LinkingConfig(link_by="score", gap=1, nms_iou=None, top_k=2),
                                    LinkingConfig(link_by="energy", nms_iou=0.5, top_k=3)])
def test_online_linker_equals_link_tubes(config):
    """Frame by frame, the tubes hold the detections ``link_tubes`` puts in them (before its finishing steps)."""
    config = LinkingConfig(**{**config.__dict__, "min_length": 1, "min_score": -math.inf, "tube_nms": None})
    rng = np.random.default_rng(0)
    for _ in range(10):
        rows = []
        start = rng.uniform(0, 200, (3, 2))
        for f in range(1, 41):
            if rng.random() < 0.15:
                continue
            for p in range(3):
                for label in range(3):
                    if rng.random() < 0.5:
                        x, y = start[p] + 1.5 * f + rng.normal(0, 4, 2)
                        rows.append([0, f, label, round(rng.random(), 2), x, y, x + 40 + rng.normal(0, 3), y + 80])
        dets = FrameDetections.from_rows(np.array(rows))
        tubes, tube_boxes = link_tubes(["v"], dets, config)
        linker = OnlineLinker(config)
        ids = np.concatenate([linker.update(f, dets.select(dets.frame == f)) for f in np.unique(dets.frame)])
        key = [(int(label), int(f), float(x)) for label, f, x in zip(dets.label, dets.frame, dets.boxes[:, 0])]
        online: dict = {}
        for k, tube in zip(key, ids.tolist()):
            if tube >= 0:
                online.setdefault(tube, []).append(k)
        real = set(key)  # link_tubes fills gaps: keep its boxes that are detections
        offline = [[k for k in ((int(tubes[t, 1]), int(b[1]), float(b[2])) for b in tube_boxes[tube_boxes[:, 0] == t])
                    if k in real] for t in range(len(tubes))]
        assert sorted(map(sorted, online.values())) == sorted(map(sorted, offline))
        assert len(online) > 5


# -- the demo --------------------------------------------------------------------------------------------------
OVERRIDES = ["MODEL.BACKBONE_3D.PRETRAIN", "", "INPUT.SHORT_SIDE_TEST", "48", "TEST.SMOOTH_FRAMES", "0",
             "MODEL.ROI_HEAD.SCORE_THRESH", "0.0", "MODEL.RPN.POST_NMS_TOP_N_TEST", "4"]


def demo(*args, cwd):
    return subprocess.run([sys.executable, str(ROOT / "tools" / "demo.py"), *args], capture_output=True, text=True,
                          cwd=cwd, env={"S3D_DET_DATASETS": str(cwd), "PATH": "/usr/bin:/bin",
                                        "OMP_NUM_THREADS": "1", "S3D_DET_CACHE": str(cwd / "cache")})


@pytest.fixture(scope="module")
def demo_setup(tmp_path_factory):
    """A seeded random tiny detector's weights and a 24-frame synthetic .mp4 (64x48)."""
    from s3d_det.config import load_config
    from s3d_det.engine.defaults import build_model

    tmp = tmp_path_factory.mktemp("demo")
    cfg = load_config(str(ROOT / "configs/synthetic/s3dg_tiny.yaml"), OVERRIDES)
    torch.manual_seed(0)
    model = build_model(cfg, num_classes=3)
    torch.save({"model": model.state_dict()}, tmp / "w.pth")
    source = MemorySource(24)
    for name, codec in (("in.mp4", "mp4v"), ("in.avi", "MJPG")):
        writer = cv2.VideoWriter(str(tmp / name), cv2.VideoWriter_fourcc(*codec), 10.0, (64, 48))
        for f in range(1, 25):
            writer.write(cv2.cvtColor(source.read([f])[f], cv2.COLOR_RGB2BGR))
        writer.release()
    return tmp, cfg


def test_demo_streams_a_video_file(demo_setup):
    from s3d_det.engine.defaults import build_model
    from s3d_det.engine.inference import open_video

    tmp, cfg = demo_setup
    args = ["--config-file", str(ROOT / "configs/synthetic/s3dg_tiny.yaml"), "--weights", "w.pth",
            "--input", "in.mp4", "--score-thresh", "0", "--quiet"]
    onnx = importlib.util.find_spec("onnxruntime") is not None
    for delay, backend in (("0", "pytorch"), ("5", "onnxruntime" if onnx else "pytorch")):
        proc = demo(*args, "--delay", delay, "--json", f"d{delay}.jsonl", "--output", f"d{delay}.mp4",
                    "--backend", backend, *OVERRIDES, cwd=tmp)
        assert proc.returncode == 0, proc.stderr
        assert f"24 frames of in.mp4, delay {delay} frames, {backend}:" in proc.stdout
        if backend == "onnxruntime":  # exported once into the cache, reused
            assert "exporting the model's parts to ONNX for onnxruntime, once" in proc.stderr
            assert len(list((tmp / "cache" / "exported").glob("*/frame.onnx"))) == 1
        records = [json.loads(line) for line in (tmp / f"d{delay}.jsonl").read_text().splitlines()]
        assert [r["frame"] for r in records] == list(range(1, 25))  # one record per input frame
        assert [r["emitted_at"] for r in records] == [min(f + int(delay), 24) for f in range(1, 25)]
        assert abs(records[10]["time"] - 1.0) < 1e-9  # (11 - 1) / 10 fps
        capture = cv2.VideoCapture(str(tmp / f"d{delay}.mp4"))
        assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 24
        capture.release()
        # the offline shared mode with the same clip placement on the same decoded frames
        cfg_w = cfg.clone()
        cfg_w.defrost()
        cfg_w.MODEL.WEIGHTS = str(tmp / "w.pth")
        placement = clip_placement(int(delay), clip_length=8, clip_stride=2, feature_stride=2)
        offline = VideoDetector.from_config(build_model(cfg_w, num_classes=3), cfg_w, position=placement.position,
                                            interpolation=placement.interpolation, smooth_frames=0)(
            open_video(str(tmp / "in.mp4")))
        assert len(offline) > 24
        for r in records:
            mine = np.array([[d["label"], d["score"], *d["box"]] for d in r["detections"]]).reshape(-1, 6)
            sel = offline.frame == r["frame"]
            theirs = np.column_stack([offline.label[sel], offline.score[sel], offline.boxes[sel]])
            assert mine.shape == theirs.shape, r["frame"]
            np.testing.assert_allclose(mine[:, :2], theirs[:, :2], atol=1e-4)
            np.testing.assert_allclose(mine[:, 2:], theirs[:, 2:], atol=0.02)
            tracks = [d["track"] for d in r["detections"]]
            assert len(set(zip(tracks, mine[:, 0]))) == len(tracks)  # a tube holds one detection a frame


def test_demo_bad_input_is_one_line(demo_setup):
    tmp, _ = demo_setup
    base = ["--config-file", str(ROOT / "configs/synthetic/s3dg_tiny.yaml"), "--weights", "w.pth", "--quiet",
            "--backend", "pytorch"]
    (tmp / "kept.jsonl").write_text("mine\n")
    cases = [(["--input", "missing.mp4", "--json", "x.jsonl"], "--input: no such file: missing.mp4"),
             (["--input", "in.mp4", "--json", "kept.jsonl"], "kept.jsonl exists"),
             # said before anything is loaded or exported
             (["--input", "in.mp4", "--weights", "nope.pth", "--json", "kept.jsonl"], "kept.jsonl exists"),
             (["--input", "w.pth", "--json", "x.jsonl"], "--input w.pth: OpenCV cannot open this video file"),
             (["--input", "in.mp4", "--weights", "nope.pth", "--json", "x.jsonl"], "--weights: no such file"),
             (["--input", "in.mp4", "--show", "--json", "x.jsonl"], "--show needs a display")]
    for extra, message in cases:
        proc = demo(*base, *extra, *OVERRIDES, cwd=tmp)
        assert proc.returncode == 2, (extra, proc.stderr)
        assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert (tmp / "kept.jsonl").read_text() == "mine\n" and not (tmp / "x.jsonl").exists()
    assert not list(tmp.glob("*.part*"))


def test_demo_ctrl_c_leaves_complete_outputs(demo_setup, tmp_path):
    """SIGINT in the middle of a stream: every frame read gets its record and its drawn frame, the files are in
    place, exit 0."""
    import signal
    import time

    tmp, _ = demo_setup
    long_video = tmp_path / "long.avi"
    writer = cv2.VideoWriter(str(long_video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 48))
    source = MemorySource(400)
    for f in range(1, 401):
        writer.write(cv2.cvtColor(source.read([f])[f], cv2.COLOR_RGB2BGR))
    writer.release()
    proc = subprocess.Popen([sys.executable, str(ROOT / "tools" / "demo.py"), "--config-file",
                             str(ROOT / "configs/synthetic/s3dg_tiny.yaml"), "--weights", str(tmp / "w.pth"),
                             "--input", str(long_video), "--json", "out.jsonl", "--output", "out.avi", "--quiet",
                             "--backend", "pytorch",
                             *OVERRIDES], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={"S3D_DET_DATASETS": str(tmp_path), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 120
    while time.time() < deadline:  # until a dozen records are written to the temporary file
        parts = list(tmp_path.glob("out.jsonl.part*"))
        if parts and len(parts[0].read_text().splitlines()) >= 12:
            break
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "(stopped by Ctrl-C)" in out
    read = int(out.split(" frames of ")[0])
    assert 12 <= read < 400
    records = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["frame"] for r in records] == list(range(1, read + 1))
    capture = cv2.VideoCapture(str(tmp_path / "out.avi"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == read
    capture.release()
    assert not list(tmp_path.glob("*.part*"))


def test_demo_reads_a_network_stream(demo_setup):
    """An HTTP stream (a live source: no frame count, reads retried) gives one record per frame."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    tmp, _ = demo_setup

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(tmp)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/in.avi"
        proc = demo("--config-file", str(ROOT / "configs/synthetic/s3dg_tiny.yaml"), "--weights", "w.pth",
                    "--input", url, "--json", "http.jsonl", "--quiet", "--delay", "2", "--backend", "pytorch",
                    *OVERRIDES, cwd=tmp)
    finally:
        server.shutdown()
    assert proc.returncode == 0, proc.stderr
    assert f"24 frames of {url}, delay 2 frames, pytorch:" in proc.stdout
    records = [json.loads(line) for line in (tmp / "http.jsonl").read_text().splitlines()]
    assert [r["frame"] for r in records] == list(range(1, 25))


# -- exported parts --------------------------------------------------------------------------------------------
def test_stream_on_exported_parts_equals_eager(model, tmp_path, fmt="exported-program"):
    """``tools/export.py --parts``'s two files (3D part per anchor, frame part per frame) give the eager stream's
    detections; files exported from another clip are refused. (ONNX parts: test_export.py, and the demo's
    onnxruntime backend in test_demo_streams_a_video_file.)"""
    from s3d_det.deploy.export import export_detector
    from s3d_det.engine.streaming import ExportedParts

    (tmp_path / "parts").mkdir()
    export_detector(model, fmt, str(tmp_path / "parts"), parts=True, height=64, width=64, clip_length=4,
                    size_divisible=32)
    n = 13
    # frames twice as wide as the traced ones (padded 64 x 128, traced at 64 x 64): the parts' sizes are dynamic
    images = {f: np.concatenate([image, image[:, ::-1]], axis=1)
              for f, image in MemorySource(n).read(list(range(1, n + 1))).items()}
    _, eager, _ = stream(model, images, delay=1)
    parts = ExportedParts(str(tmp_path / "parts"))
    _, exported, _ = stream(model, images, delay=1, parts=parts)
    assert [r.frame for r in exported] == list(range(1, n + 1))
    for a, b in zip(eager, exported):
        assert len(a.detections) == len(b.detections) and len(a.detections) > 0, a.frame
        np.testing.assert_array_equal(a.detections.label, b.detections.label)
        np.testing.assert_allclose(a.detections.score, b.detections.score, atol=1e-3)
        np.testing.assert_allclose(a.detections.boxes, b.detections.boxes, atol=0.5)
    (tmp_path / "parts" / "meta.json").write_text(json.dumps({"clip_length": 8}))
    with pytest.raises(ValueError, match="exported with clip_length 8, the config has 4"):
        StreamingDetector(model, **INPUT, parts=ExportedParts(str(tmp_path / "parts")))
    (tmp_path / "parts" / "meta.json").write_text(json.dumps({"classes": ["a"] * 5, "size_divisible": 32}))
    with pytest.raises(ValueError, match="exported with 5 actions, the model has 3"):
        StreamingDetector(model, **INPUT, parts=ExportedParts(str(tmp_path / "parts")))


def test_demo_stops_cleanly_when_the_frame_size_changes(demo_setup, tmp_path, monkeypatch, capsys):
    """A camera switching resolution: the stream ends at the last frame of the first size, every frame before it
    gets its record, and the outputs are complete (in process, the reader replaced)."""
    spec = importlib.util.spec_from_file_location("demo_tool", ROOT / "tools" / "demo.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    tmp, _ = demo_setup
    source = MemorySource(9)
    frames = [source.read([f])[f] for f in range(1, 10)] + [np.zeros((40, 64, 3), np.uint8)] * 3
    monkeypatch.setattr(tool, "read_frames", lambda *args: iter(frames))
    monkeypatch.setenv("S3D_DET_DATASETS", str(tmp_path))
    status = tool.main(["--config-file", str(ROOT / "configs/synthetic/s3dg_tiny.yaml"), "--weights",
                        str(tmp / "w.pth"), "--input", str(tmp / "in.mp4"), "--json", str(tmp_path / "o.jsonl"),
                        "--backend", "pytorch", "--quiet", *OVERRIDES])
    assert status == 0
    assert "9 frames of" in capsys.readouterr().out
    records = [json.loads(line) for line in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert [r["frame"] for r in records] == list(range(1, 10))
