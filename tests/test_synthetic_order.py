"""The order classes of the synthetic generator (``classes="order"``): pairs that are each other's time reversal,
the same random numbers in both classes of a pair, the arm pair's constant box, the annotated change, the clip set's
placement of the change, and the default sets unchanged to the byte."""
import dataclasses
import hashlib
import json
import logging
import math
import os

import numpy as np
import pytest

from s3d_det.data import synthetic, synthetic_clips
from s3d_det.data.annotations import load_gt, validate_gt
from s3d_det.data.frames import ImageFolderSource
from s3d_det.data.synthetic import (
    ORDER_CLASSES,
    ORDER_HOLD,
    ORDER_MARGIN,
    ensure_synthetic,
    generate_synthetic,
    plan_video,
)
from s3d_det.data.video_lists import read_ucf101

ORDER = dict(num_videos=4, seed=3, size=(120, 160), min_frames=30, max_frames=36, classes="order")
ARM_KINDS = ("arm_up", "arm_down")


def _rendered_digest(plans):
    h = hashlib.md5()
    for plan in plans:
        h.update(plan.name.encode())
        for t in range(1, plan.nframes + 1):
            image, boxes = synthetic.render_frame(plan, t)
            h.update(image.tobytes())
            for b in boxes:
                h.update(b.tobytes() if b is not None else b"-")
        for a in plan.actors:
            h.update(repr((a.motion.label, a.motion.start, a.motion.end)).encode())
    return h.hexdigest()


def test_the_default_sets_are_unchanged_to_the_byte():
    """Digests of the rendered frames, boxes and tubes (detection set) and of the cut clips (clip set), taken before
    the order classes existed: the default sets keep VERSION 2 / 1 because none of their bytes changed. They hold
    for the numpy and OpenCV builds this project installs (cv2 drawing and resizing)."""
    plans = [plan_video(seed=3, index=i, size=(120, 160), min_frames=12, max_frames=20) for i in range(4)]
    assert _rendered_digest(plans) == "c5a901b1fc0fa922cc4205013f2a89b4"
    h = hashlib.md5()
    params = synthetic_clips.clip_params(num_videos=2, max_frames=12, crop=32)
    assert "classes" not in params
    for i in range(2):
        for clip in synthetic_clips._video_clips(i, params):
            h.update(repr((clip["label"], clip["name"])).encode())
            for frame in clip["frames"]:
                h.update(frame.tobytes())
    assert h.hexdigest() == "2d46c24f7dd4e393425a011df1c725b3"


def _order_actors(n=40, seed=5):
    return [(plan, actor) for i in range(n) for plan in [plan_video(seed=seed, index=i, classes="order")]
            for actor in plan.actors]


def test_both_classes_of_a_pair_draw_the_same_numbers():
    for index in range(12):
        for first, second in ((0, 1), (2, 3)):
            a, b = (plan_video(seed=7, index=index, label=label, classes="order") for label in (first, second))
            ma, mb = a.actors[0].motion, b.actors[0].motion
            assert (ma.kind, mb.kind) == (ORDER_CLASSES[first], ORDER_CLASSES[second])
            assert (ma.start, ma.end, ma.x, ma.ground, ma.arm) == (mb.start, mb.end, mb.x, mb.ground, mb.arm)
            assert (ma.pose, ma.target) == (mb.target, mb.pose)
            assert a.actors[0].appearance == b.actors[0].appearance
            assert np.array_equal(a.actors[0].jitter, b.actors[0].jitter)


def test_the_change_is_annotated_with_four_held_frames_each_side_and_held_long_before_and_after():
    ramps = set()
    for plan, actor in _order_actors():
        m = actor.motion
        d = m.end - m.start + 1 - 2 * ORDER_MARGIN
        ramps.add(d)
        assert 4 <= d <= 8
        t0, t1 = m.start + ORDER_MARGIN, m.end - ORDER_MARGIN  # first and last frame of the change
        assert t0 - 1 >= ORDER_HOLD and plan.nframes - t1 >= ORDER_HOLD
        still = dataclasses.replace(actor, jitter=np.zeros_like(actor.jitter))

        def value(t):
            limbs, _, head, _ = synthetic._skeleton(still, t)
            if m.kind in ARM_KINDS:  # the moving arm's angle from hanging down, from its hand's offset to the shoulder
                (sx, sy), (hx, hy) = limbs[4 + m.arm]
                narrowed = 0.4 + 0.6 * abs(math.cos(actor.appearance.yaw))  # the figure's turn narrows x
                return math.atan2(abs(hx - sx) / narrowed, hy - sy)
            return head[1]  # crouching lowers the head

        values = [value(t) for t in range(1, plan.nframes + 1)]
        before, change, after = values[:t0 - 1], values[t0 - 1:t1], values[t1:]
        assert np.allclose(before, before[0]) and np.allclose(after, after[0])
        assert len(change) == d
        if m.kind in ARM_KINDS:
            assert before[0] == pytest.approx(m.pose) and after[0] == pytest.approx(m.target)
            assert before[0] + after[0] == pytest.approx(math.pi)  # mirror angles
        steps = np.diff([before[-1], *change, after[0]])
        assert (np.sign(steps) == np.sign(after[0] - before[0])).all()  # strictly monotonic over the change
    assert ramps == set(range(4, 9))


def test_a_class_played_backwards_is_its_pair():
    """The pose of an arm_up (sit_down) actor at frame t is that of the arm_down (stand_up) actor with the change
    mirrored in time at frame n + 1 - t (jitter reversed too): the classes are exact time reversals."""
    for plan, actor in _order_actors(12):
        m, n = actor.motion, plan.nframes
        pair = {"arm_up": "arm_down", "arm_down": "arm_up", "sit_down": "stand_up", "stand_up": "sit_down"}
        mirrored = dataclasses.replace(m, kind=pair[m.kind], pose=m.target, target=m.pose, start=n + 1 - m.end,
                                       end=n + 1 - m.start)
        back = dataclasses.replace(actor, motion=mirrored, jitter=actor.jitter[::-1].copy())
        for t in range(1, n + 1):
            limbs, body, head, _ = synthetic._skeleton(actor, t)
            limbs2, body2, head2, _ = synthetic._skeleton(back, n + 1 - t)
            assert np.allclose(np.array(limbs), np.array(limbs2)) and np.allclose(head, head2)


def test_the_arm_pair_keeps_its_box_outside_the_change():
    """The raised hand stays below the head top and sin(180 - a) = sin(a): the box of a still arm_up/arm_down actor
    is the same at every held frame, so the box says nothing of which pose is shown."""
    seen = 0
    for plan, actor in _order_actors():
        if actor.motion.kind not in ARM_KINDS:
            continue
        still = dataclasses.replace(actor, jitter=np.zeros_like(actor.jitter))
        canvas = np.zeros((*plan.size, 3), np.uint8)
        first = synthetic._draw_actor(canvas.copy(), still, 1)
        last = synthetic._draw_actor(canvas.copy(), still, plan.nframes)
        assert np.array_equal(first, last)
        seen += 1
    assert seen >= 15


def test_an_order_set_is_valid_act_ground_truth(tmp_path):
    root = tmp_path / "order"
    gt = load_gt(generate_synthetic(str(root), progress=False, **ORDER))
    validate_gt(gt)
    assert list(gt["labels"]) == list(ORDER_CLASSES)
    meta = json.loads((root / "meta.json").read_text())
    assert meta["params"]["classes"] == "order" and list(meta["classes"]) == list(ORDER_CLASSES)
    assert "ends in after" in meta["idle"]
    assert sorted(gt["nframes"]) == ["arm_down/arm_down_0000", "arm_up/arm_up_0000", "sit_down/sit_down_0000",
                                     "stand_up/stand_up_0000"]
    for video, tubes in gt["gttubes"].items():
        assert ORDER_CLASSES.index(video.split("/")[0]) in tubes  # the first actor's class names the video
        for label, per_label in tubes.items():
            for tube in per_label:
                assert 4 + 2 * ORDER_MARGIN <= len(tube) <= 8 + 2 * ORDER_MARGIN
                assert np.array_equal(tube[:, 0], np.arange(tube[0, 0], tube[0, 0] + len(tube)))


@pytest.mark.parametrize("kwargs, match", [
    ({"classes": "orders"}, "classes must be one of"),
    ({"classes": "order", "multi_label": 0.5}, "multi_label needs the default classes"),
    ({"classes": "order", "min_frames": 20}, "min_frames >= 30"),
])
def test_bad_class_arguments_are_refused(tmp_path, kwargs, match):
    args = {**ORDER, **kwargs}
    with pytest.raises(ValueError, match=match):
        generate_synthetic(str(tmp_path / "data"), progress=False, **args)
    assert not (tmp_path / "data").exists()


def test_ensure_tells_an_order_set_from_a_default_one(tmp_path, caplog):
    root = str(tmp_path / "data")
    path = ensure_synthetic(root, progress=False, **ORDER)
    default = {k: v for k, v in ORDER.items() if k != "classes"}
    assert synthetic._check_params(**default, test_fraction=1 / 3) == {
        "num_videos": 4, "seed": 3, "size": [120, 160], "min_frames": 30, "max_frames": 36, "test_fraction": 1 / 3}
    with caplog.at_level(logging.WARNING, logger="s3d_det.data.synthetic"):
        assert ensure_synthetic(root, progress=False, **default) == path  # kept (never overwritten), with a warning
    assert "classes 'order'" in caplog.text and "classes 'default'" in caplog.text
    assert json.loads(open(os.path.join(root, "meta.json")).read())["params"]["classes"] == "order"


@pytest.fixture(scope="module")
def order_clips(tmp_path_factory):
    return synthetic_clips.generate_synthetic_clips(str(tmp_path_factory.mktemp("clips") / "order"), num_videos=4,
                                                    test_fraction=0.25, crop=32, classes="order", progress=False)


def test_order_clips_read_as_ucf101(order_clips):
    names = [*ORDER_CLASSES, "idle"]
    train, test = (read_ucf101(order_clips, split=1, subset=s) for s in ("train", "test"))
    assert train.classes == names and test.classes == names
    meta = json.loads(open(os.path.join(order_clips, "meta.json")).read())
    assert meta["params"]["classes"] == "order" and list(meta["classes"]) == names
    lengths = {ImageFolderSource(r.path).num_frames for r in train.records + test.records if r.label < 4}
    assert lengths == {synthetic_clips.ORDER_CLIP_FRAMES}


def test_order_clips_hold_the_change_inside_both_test_views(monkeypatch):
    """Frames drawn as the plain number of their video frame (real boxes) show which frames a clip cut: 20
    consecutive ones, with the change (frames start + 4 .. end - 4 of the motion) at clip frames r .. r + d - 1,
    5 <= r and r + d <= 15, so both 15-frame test views (0-14, 5-19) and every training window hold all of it."""
    real = synthetic_clips.render_frame

    def numbered(plan, t):
        image, boxes = real(plan, t)
        return np.full_like(image, t), boxes

    monkeypatch.setattr(synthetic_clips, "render_frame", numbered)
    params = synthetic_clips.clip_params(num_videos=24, classes="order")
    seed = params["seed"] + synthetic_clips._SEED_OFFSET
    starts, ends = set(), set()
    for index in range(24):
        plan = plan_video(seed=seed, index=index, size=(240, 320), classes="order")
        clips = [c for c in synthetic_clips._video_clips(index, params) if not c["name"].endswith("_idle")]
        assert len(clips) == len(plan.actors)
        for actor, clip in zip(plan.actors, clips):
            shown = [int(frame[0, 0, 0]) for frame in clip["frames"]]
            assert shown == list(range(shown[0], shown[0] + 20))
            m = actor.motion
            r, last = m.start + ORDER_MARGIN - shown[0], m.end - ORDER_MARGIN - shown[0]
            assert 5 <= r and last <= 14
            starts.add(r)
            ends.add(19 - last)  # held frames after the change: the same law as r
    assert min(starts) == 5 and max(starts) >= 10 and min(ends) == 5 and max(ends) >= 10


def test_a_clip_set_of_other_classes_is_an_error_naming_them(order_clips):
    with pytest.raises(ValueError) as info:
        synthetic_clips.ensure_synthetic_clips(order_clips, num_videos=4, test_fraction=0.25, crop=32,
                                               progress=False)
    assert "classes 'order', asked 'default'" in str(info.value)
    with pytest.raises(ValueError, match="max_frames must be >= 20"):
        synthetic_clips.clip_params(max_frames=16, classes="order")


def test_the_config_key_reaches_both_generators(tmp_path, monkeypatch):
    from s3d_det.config import ConfigError, get_cfg
    from s3d_det.engine import classification, defaults

    cfg = get_cfg()
    cfg.DATASETS.NAME, cfg.DATASETS.ROOT = "synthetic", str(tmp_path / "data")
    cfg.DATASETS.SYNTHETIC_CLASSES = "order"
    seen = {}

    def fake(root, **kwargs):
        seen.update(kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(synthetic, "ensure_synthetic", fake)
    monkeypatch.setattr(synthetic_clips, "ensure_synthetic_clips", fake)
    with pytest.raises(KeyboardInterrupt):
        defaults.load_dataset_gt(cfg)
    assert seen.pop("classes") == "order"
    cfg.DATASETS.NAME = "synthetic_clips"
    with pytest.raises(KeyboardInterrupt):
        classification.build_video_lists(cfg)
    assert seen.pop("classes") == "order"
    cfg.DATASETS.SYNTHETIC_CLASSES = "six"
    with pytest.raises(ConfigError, match="DATASETS.SYNTHETIC_CLASSES must be one of default, order, got 'six'"):
        classification.build_video_lists(cfg)


def test_benchmarks_know_each_synthetic_sets_class_count():
    from s3d_det.config import get_cfg
    from s3d_det.engine.defaults import known_num_classes

    cfg = get_cfg()
    counts = {}
    for name in ("synthetic", "synthetic_clips"):
        for classes in ("default", "order"):
            cfg.DATASETS.NAME, cfg.DATASETS.SYNTHETIC_CLASSES = name, classes
            counts[name, classes] = known_num_classes(cfg)
    assert counts == {("synthetic", "default"): 6, ("synthetic", "order"): 4, ("synthetic_clips", "default"): 7,
                      ("synthetic_clips", "order"): 5}
    cfg.DATASETS.NAME = "jhmdb"
    assert known_num_classes(cfg) == 21
