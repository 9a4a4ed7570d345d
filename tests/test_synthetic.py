"""The synthetic benchmark: deterministic bytes, ACT layout, tight boxes, class-free appearance, untrimmed
tubes, atomic (re)generation and the command line. Tiny settings: 6 videos of 12-20 frames at 160x120."""
import dataclasses
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from s3d_det.data import synthetic
from s3d_det.data.annotations import load_gt, validate_gt
from s3d_det.data.synthetic import CLASSES, ensure_synthetic, generate_synthetic, plan_video, render_frame

TINY = dict(num_videos=6, seed=3, size=(120, 160), min_frames=12, max_frames=20)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(dataset folder, GT dict) of the TINY dataset."""
    root = tmp_path_factory.mktemp("synthetic") / "tiny"
    path = generate_synthetic(str(root), progress=False, **TINY)
    assert path == str(root / "synthetic-GT.pkl")
    return root, load_gt(path)


def _files(root):
    """relative path -> bytes of every file under root."""
    out = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, root)] = f.read()
    return out


def _plans(**kw):
    args = {k: kw.get(k, TINY[k]) for k in ("seed", "size", "min_frames", "max_frames")}
    return [plan_video(index=i, **args) for i in range(kw.get("num_videos", TINY["num_videos"]))]


def test_same_seed_same_bytes_other_seed_other_bytes(tiny, tmp_path):
    root, _ = tiny
    again = generate_synthetic(str(tmp_path / "again"), progress=False, **TINY)
    first, second = _files(root), _files(os.path.dirname(again))
    assert sorted(first) == sorted(second)
    assert [p for p in first if first[p] != second[p]] == []
    other = _files(os.path.dirname(generate_synthetic(str(tmp_path / "other"), progress=False,
                                                      **{**TINY, "seed": 4})))
    assert first["synthetic-GT.pkl"] != other["synthetic-GT.pkl"]
    shared = set(first) & set(other)
    frames = [p for p in shared if p.endswith(".jpg")]
    assert frames and all(first[p] != other[p] for p in frames)


def test_layout_matches_gt_and_validates(tiny):
    root, gt = tiny
    assert validate_gt(gt, frames_root=str(root)) == []
    assert gt["labels"] == list(CLASSES)
    videos = [f"{c}/{c}_0000" for c in CLASSES]  # video i: class i % 6, index i // 6
    assert sorted(gt["nframes"]) == sorted(videos)
    # 6 videos, test fraction 1/3: the last 2 are the test split
    assert gt["train_videos"] == [videos[:4]] and gt["test_videos"] == [videos[4:]]
    for video in videos:
        n = gt["nframes"][video]
        assert 12 <= n <= 20
        assert gt["resolution"][video] == (120, 160)
        folder = root / "Frames" / video
        assert sorted(os.listdir(folder)) == [f"{t:05d}.jpg" for t in range(1, n + 1)]
        assert cv2.imread(str(folder / f"{n:05d}.jpg")).shape == (120, 160, 3)
    assert sorted(os.listdir(root)) == ["Frames", "meta.json", "synthetic-GT.pkl"]


def test_every_class_has_a_video_and_a_tube(tiny):
    _, gt = tiny
    for label, name in enumerate(CLASSES):
        # the folder's class is the class of the video's first actor
        assert label in gt["gttubes"][f"{name}/{name}_0000"]
    assert sorted({label for per_label in gt["gttubes"].values() for label in per_label}) == list(range(6))


def test_written_frames_are_the_rendered_frames(tiny):
    root, _ = tiny
    plan = _plans()[2]
    for t in (1, plan.nframes):
        jpeg = cv2.imread(str(root / "Frames" / plan.name / f"{t:05d}.jpg")).astype(np.float64)
        image, _ = render_frame(plan, t)
        psnr = 10 * np.log10(255**2 / np.mean((jpeg - image) ** 2))
        assert psnr > 30, (t, psnr)


def test_boxes_are_the_tight_extent_of_the_drawn_actor(tiny):
    _, gt = tiny
    for plan in _plans():
        tubes = gt["gttubes"][plan.name]
        for k, actor in enumerate(plan.actors):
            m = actor.motion
            # this actor's tube: the one of its label spanning its action frames
            (tube,) = [tb for tb in tubes[m.label] if (tb[0, 0], tb[-1, 0]) == (m.start, m.end)]
            assert tube[:, 0].tolist() == list(range(m.start, m.end + 1))
            for row in tube[:: max(1, len(tube) // 4)]:
                t = int(row[0])
                empty, _ = render_frame(plan, t, actors=[], occluder=False)
                alone, _ = render_frame(plan, t, actors=[k], occluder=False)
                rows, cols = np.nonzero((alone != empty).any(axis=2))
                assert row[1:].tolist() == [cols.min(), rows.min(), cols.max(), rows.max()], (plan.name, k, t)
                assert 0 <= row[1] <= row[3] <= 159 and 0 <= row[2] <= row[4] <= 119
                # the occluder bar hides part of an actor at most
                barred, _ = render_frame(plan, t, actors=[k])
                assert (barred != render_frame(plan, t, actors=[])[0]).any(axis=2).sum() > 0.5 * len(rows)


def test_videos_are_untrimmed_with_an_idle_actor_outside_its_tube(tiny):
    _, gt = tiny
    for plan in _plans():
        annotated = {int(f) for tubes in gt["gttubes"][plan.name].values() for tb in tubes for f in tb[:, 0]}
        for k, actor in enumerate(plan.actors):
            m = actor.motion
            assert 1 < m.start <= m.end < plan.nframes
            idle = [1, plan.nframes]
            empty = [render_frame(plan, t, actors=[], occluder=False)[0] for t in idle]
            drawn = [render_frame(plan, t, actors=[k], occluder=False) for t in idle]
            for (image, boxes), blank in zip(drawn, empty):
                assert (image != blank).any()  # the actor is there
            if len(plan.actors) == 1:
                assert annotated.isdisjoint(idle)  # ... and has no box
            # idle is jitter only: 0.75 px position, 2 degrees of arm (0.4 h arm: under 1.6 px), 1 px rounding
            before = [render_frame(plan, t, actors=[k], occluder=False)[1][k] for t in range(1, m.start)]
            assert np.abs(np.diff(before, axis=0)).max(initial=0) <= 4


def test_appearance_does_not_depend_on_the_class():
    plans = [plan_video(seed=5, index=7, size=(120, 160), min_frames=12, max_frames=20, label=c) for c in range(6)]
    assert {p.actors[0].motion.label for p in plans} == set(range(6))
    for p in plans[1:]:
        assert p.actors[0].appearance == plans[0].actors[0].appearance
        assert np.array_equal(p.actors[0].jitter, plans[0].actors[0].jitter)
        assert p.nframes == plans[0].nframes and np.array_equal(p.background, plans[0].background)
    fields = [f.name for f in dataclasses.fields(synthetic.Appearance)]
    assert "label" not in fields


def test_single_frames_look_alike_across_classes():
    """Per-class means over annotated frames (150 videos) of the box height and width divided by the actor's
    standing height: equal up to sampling error. The width follows the actor's resting turn (yaw), drawn
    once an actor, so its class means scatter more (~5%) than the height's (~1.5%)."""
    sizes = {label: [] for label in range(6)}
    for plan in _plans(num_videos=150, seed=1):
        for k, actor in enumerate(plan.actors):
            for t in range(actor.motion.start, actor.motion.end + 1, 2):
                x1, y1, x2, y2 = render_frame(plan, t, actors=[k], occluder=False)[1][k]
                sizes[actor.motion.label].append(np.array([y2 - y1 + 1, x2 - x1 + 1]) / actor.appearance.height)
    overall = np.concatenate([np.array(v) for v in sizes.values()]).mean(axis=0)
    for label, values in sizes.items():
        height, width = np.mean(values, axis=0) / overall
        assert abs(height - 1) < 0.06 and abs(width - 1) < 0.15, (CLASSES[label], height, width)


def test_ensure_keeps_a_complete_dataset_and_redoes_an_incomplete_one(tmp_path, monkeypatch):
    root = str(tmp_path / "data")
    path = ensure_synthetic(root, progress=False, **TINY)
    before = _files(root)
    generate = synthetic.generate_synthetic

    def must_not_run(*args, **kwargs):
        raise AssertionError("regenerated a complete dataset")

    monkeypatch.setattr(synthetic, "generate_synthetic", must_not_run)
    assert ensure_synthetic(root, progress=False, **TINY) == path
    monkeypatch.setattr(synthetic, "generate_synthetic", generate)

    frame = os.path.join(root, "Frames", "jump", "jump_0000", "00003.jpg")
    os.remove(frame)  # our set, these arguments (meta.json says so), incomplete: made again
    ensure_synthetic(root, progress=False, **TINY)
    assert _files(root) == before
    # other arguments: the set there is kept and used (a user's set is never overwritten; test_run_faults.py)
    assert ensure_synthetic(root, progress=False, **{**TINY, "seed": 9}) == path
    assert _files(root) == before


def test_a_failed_run_leaves_nothing_that_looks_complete(tmp_path, monkeypatch):
    stale = tmp_path / ".data.tmp-999999999-abc"  # a killed run's build folder: no such process
    stale.mkdir()

    def crash(root, params, progress):
        os.makedirs(os.path.join(root, "Frames"))
        raise KeyboardInterrupt

    monkeypatch.setattr(synthetic, "_write_dataset", crash)
    with pytest.raises(KeyboardInterrupt):
        generate_synthetic(str(tmp_path / "data"), progress=False, **TINY)
    assert os.listdir(tmp_path) == []


def test_refuses_to_replace_a_folder_it_did_not_write(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="notes.txt"):
        generate_synthetic(str(tmp_path), progress=False, **TINY)
    assert os.listdir(tmp_path) == ["notes.txt"]


@pytest.mark.parametrize("bad, match", [
    (dict(num_videos=0), "num_videos"), (dict(num_videos=1), "num_videos"), (dict(num_videos=2.0), "num_videos"),
    (dict(seed=-1), "seed"), (dict(size=(40, 40)), "height >= 64"), (dict(size=(120, 100)), "width >= height"),
    (dict(min_frames=4), "min_frames"), (dict(min_frames=20, max_frames=12), "min_frames"),
    (dict(test_fraction=0), "test_fraction"), (dict(test_fraction=1.0), "test_fraction"),
])
def test_bad_arguments_are_refused(tmp_path, bad, match):
    with pytest.raises(ValueError, match=match):
        generate_synthetic(str(tmp_path / "data"), progress=False, **{**TINY, **bad})
    assert not (tmp_path / "data").exists()


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "s3d_det.data.synthetic", *args],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_command_line(tmp_path):
    out = tmp_path / "cli"
    done = _cli("--out", str(out), "--num-videos", "3", "--seed", "2", "--size", "160x120",
                "--min-frames", "8", "--max-frames", "9", "--test-fraction", "1/3", "--quiet")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(out / "synthetic-GT.pkl")
    gt = load_gt(done.stdout.strip())
    assert validate_gt(gt, frames_root=str(out)) == []
    assert set(gt["resolution"].values()) == {(120, 160)} and len(gt["test_videos"][0]) == 1

    for args, message in ((["--num-videos", "0"], "num_videos"), (["--size", "320"], "WIDTHxHEIGHT"),
                          (["--test-fraction", "one"], "fraction")):
        done = _cli("--out", str(tmp_path / "bad"), "--quiet", *args)
        assert done.returncode == 2 and message in done.stderr, done.stderr
        assert not (tmp_path / "bad").exists()
