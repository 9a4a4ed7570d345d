"""The synthetic clip set (s3d_det/data/synthetic_clips.py) on 2-4 videos: deterministic bytes, UCF101's layout as
read_ucf101 reads it, never the detection set's videos, and never a folder it did not make."""
import json
import os

import numpy as np
import pytest

import s3d_det.data.synthetic_clips as synthetic_clips
from s3d_det.data.frames import ImageFolderSource
from s3d_det.data.synthetic import plan_video, render_frame
from s3d_det.data.synthetic_clips import ensure_synthetic_clips, generate_synthetic_clips
from s3d_det.data.video_lists import read_ucf101

CLASSES = ["move_left", "move_right", "jump", "wave", "spin", "crouch", "idle"]
TINY = dict(num_videos=2, test_fraction=0.5, progress=False)


def tree(root):
    """{relative path: bytes} of every file under ``root``."""
    out = {}
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, root)] = f.read()
    return out


@pytest.fixture(scope="module")
def clip_set(tmp_path_factory):
    return generate_synthetic_clips(str(tmp_path_factory.mktemp("clips") / "set"), num_videos=4, test_fraction=0.25,
                                    max_frames=12, crop=32, progress=False)


def test_two_builds_are_byte_identical(tmp_path):
    a = generate_synthetic_clips(str(tmp_path / "a"), **TINY)
    b = generate_synthetic_clips(str(tmp_path / "b"), **TINY)
    files = tree(a)
    assert len(files) > 10 and files == tree(b)
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".")]  # no build folder left behind


def test_the_set_reads_as_ucf101(clip_set):
    train, test = (read_ucf101(clip_set, split=1, subset=s) for s in ("train", "test"))
    assert train.classes == CLASSES and test.classes == CLASSES
    assert train.records and test.records and not train.missing and not test.missing
    meta = json.load(open(os.path.join(clip_set, "meta.json")))
    assert meta["videos"] == {"train": 3, "test": 1}  # the last quarter of 4 videos tests
    for videos in (train, test):
        assert sum(meta["clips"][videos.subset].values()) == len(videos.records)
        for r in videos.records:
            cls, name = r.video.split("/")
            assert CLASSES[r.label] == cls and name.startswith(f"v_{cls}_g")
            assert name.endswith("_idle") == (cls == "idle")
            source = ImageFolderSource(r.path)
            assert 8 <= source.num_frames <= 12 and source.size == (32, 32)
    assert {int(r.video.split("_g")[1][:4]) for r in train.records} == {0, 1, 2}
    assert {int(r.video.split("_g")[1][:4]) for r in test.records} == {3}


def test_ensure_reuses_a_finished_set(clip_set):
    meta = os.path.join(clip_set, "meta.json")
    before = os.stat(meta).st_mtime_ns
    assert ensure_synthetic_clips(clip_set, num_videos=4, test_fraction=0.25, max_frames=12, crop=32,
                                  progress=False) == clip_set
    assert os.stat(meta).st_mtime_ns == before


def test_a_set_made_with_other_arguments_is_an_error_naming_them(clip_set):
    with pytest.raises(ValueError) as info:
        ensure_synthetic_clips(clip_set, num_videos=4, test_fraction=0.25, max_frames=12, crop=32, seed=5,
                               progress=False)
    message = str(info.value)
    assert "\n" not in message and "seed 0, asked 5" in message and "crop" not in message.split("(")[1]
    assert os.path.isfile(os.path.join(clip_set, "meta.json"))  # untouched


@pytest.mark.parametrize("make", [ensure_synthetic_clips, generate_synthetic_clips])
def test_a_foreign_folder_is_never_overwritten(tmp_path, make):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError) as info:
        make(str(folder), **TINY)
    assert "\n" not in str(info.value) and "not a synthetic clip set" in str(info.value)
    assert os.listdir(folder) == ["notes.txt"] and (folder / "notes.txt").read_text() == "keep me"


def test_a_folder_with_another_generators_meta_is_never_overwritten(tmp_path):
    folder = tmp_path / "detection"  # e.g. the detection set's meta.json: not ours to replace
    folder.mkdir()
    (folder / "meta.json").write_text(json.dumps({"generator": "s3d_det.data.synthetic", "version": 2}))
    (folder / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not a synthetic clip set"):
        generate_synthetic_clips(str(folder), **TINY)
    assert sorted(os.listdir(folder)) == ["meta.json", "notes.txt"]


def test_an_empty_or_absent_folder_is_made(tmp_path):
    (tmp_path / "empty").mkdir()
    for name in ("empty", "absent"):
        ensure_synthetic_clips(str(tmp_path / name), **TINY)
        assert os.path.isfile(tmp_path / name / "meta.json")


def test_bad_arguments():
    for kwargs, match in [({"num_videos": 1}, "num_videos"), ({"seed": -1}, "seed"), ({"test_fraction": 1.0},
                          "test_fraction"), ({"max_frames": 4}, "max_frames"), ({"crop": 8}, "crop"),
                          ({"context": 0.5}, "context")]:
        with pytest.raises(ValueError, match=match):
            synthetic_clips.clip_params(**kwargs)


def test_no_clip_comes_from_a_video_of_the_detection_set(tmp_path, monkeypatch):
    """The clip set draws its videos with seed + 1_000_003: for seed 0, video 0 is not the detection set's video 0
    of seed 0 (nor of any seed a user gives the detection set in practice)."""
    seeds = []

    def spy(**kwargs):
        seeds.append(kwargs["seed"])
        return plan_video(**kwargs)

    monkeypatch.setattr(synthetic_clips, "plan_video", spy)
    generate_synthetic_clips(str(tmp_path / "set"), **TINY)
    assert seeds == [1_000_003, 1_000_003]
    clip_plan = plan_video(seed=1_000_003, index=0)
    for seed in (0, 1, 2):
        det_plan = plan_video(seed=seed, index=0)
        assert det_plan.nframes != clip_plan.nframes or not np.array_equal(render_frame(det_plan, 1)[0],
                                                                           render_frame(clip_plan, 1)[0])
