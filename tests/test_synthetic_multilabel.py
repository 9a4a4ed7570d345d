"""The multi-label synthetic variant (``multi_label`` > 0): movers that also wave, jump or spin; the same box in both
labels' tubes on the frames of the second action; valid ACT ground truth; the default set unchanged; the pose shows
both motions. Tiny settings as tests/test_synthetic.py: 6 videos of 12-20 frames at 160x120."""
import dataclasses
import json
import logging
import os

import numpy as np
import pytest

from s3d_det.data import synthetic
from s3d_det.data.annotations import check_gt, load_gt, validate_gt
from s3d_det.data.synthetic import CLASSES, COMBINED, ensure_synthetic, generate_synthetic, plan_video, render_frame

TINY = dict(num_videos=6, seed=3, size=(120, 160), min_frames=12, max_frames=20)
PLAN = {k: TINY[k] for k in ("seed", "size", "min_frames", "max_frames")}
MOVERS = {CLASSES.index("move_left"), CLASSES.index("move_right")}


@pytest.fixture(scope="module")
def multi(tmp_path_factory):
    """(folder, GT) of TINY with every mover doing a second action."""
    root = tmp_path_factory.mktemp("synthetic") / "multi"
    return root, load_gt(generate_synthetic(str(root), progress=False, multi_label=1.0, **TINY))


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    """(folder, GT) of TINY made through the unchanged path (no multi_label argument)."""
    root = tmp_path_factory.mktemp("synthetic") / "single"
    return root, load_gt(generate_synthetic(str(root), progress=False, **TINY))


def _shared_boxes(gt, video):
    """{frame: sorted labels} of the boxes of ``video`` that are in the tubes of two labels or more."""
    owners = {}
    for label, tubes in gt["gttubes"][video].items():
        for tube in tubes:
            for row in tube:
                owners.setdefault(tuple(row.tolist()), set()).add(label)
    return {int(row[0]): sorted(labels) for row, labels in owners.items() if len(labels) > 1}


def test_a_combined_actor_has_its_box_in_both_labels_tubes(multi):
    root, gt = multi
    # read off the tiny seeded set (seed 3): the first video's mover jumps on frames 3-11 of its walk (3-12)
    move_left, jump = CLASSES.index("move_left"), CLASSES.index("jump")
    video = "move_left/move_left_0000"
    (walk,) = gt["gttubes"][video][move_left]
    (hop,) = gt["gttubes"][video][jump]
    assert walk[:, 0].tolist() == list(range(3, 13)) and hop[:, 0].tolist() == list(range(3, 12))
    assert np.array_equal(hop, walk[:9])
    assert _shared_boxes(gt, video) == {t: [move_left, jump] for t in range(3, 12)}
    # every video: the shared boxes are exactly the second actions' frames, paired with the mover's label
    seconds = 0
    for i in range(TINY["num_videos"]):
        plan = plan_video(index=i, multi_label=1.0, **PLAN)
        expected = {}
        for actor in plan.actors:
            assert (actor.second is not None) == (actor.motion.label in MOVERS)  # multi_label 1: every mover
            if actor.second is not None:
                seconds += 1
                assert CLASSES[actor.second.label] in COMBINED
                assert actor.motion.start <= actor.second.start <= actor.second.end <= actor.motion.end
                span = actor.motion.end - actor.motion.start + 1
                assert actor.second.end - actor.second.start + 1 >= min(3, span, span / 2)
                for t in range(actor.second.start, actor.second.end + 1):
                    expected[t] = sorted([actor.motion.label, actor.second.label])
        assert _shared_boxes(gt, plan.name) == expected, plan.name
    assert seconds == 3
    assert validate_gt(gt, frames_root=str(root)) == []
    check_gt(gt, "multi")
    meta = json.loads((root / "meta.json").read_text())
    assert meta["params"]["multi_label"] == 1.0 and "combined" in meta
    assert meta["tubes"] == sum(len(t) for per_label in gt["gttubes"].values() for t in per_label.values())


def test_all_three_combinations_occur():
    kinds = {CLASSES[a.second.label] for i in range(12) for a in plan_video(index=i, multi_label=1.0, **PLAN).actors
             if a.second is not None}
    assert kinds == {"wave", "jump", "spin"}
    # about the asked share of the movers: 0.5 of them over 60 videos
    movers = [a for i in range(60) for a in plan_video(index=i, multi_label=0.5, **PLAN).actors
              if a.motion.label in MOVERS]
    share = np.mean([a.second is not None for a in movers])
    assert len(movers) >= 20 and 0.3 < share < 0.7


def test_default_is_the_single_label_set(single, tmp_path):
    root, gt = single
    meta = json.loads((root / "meta.json").read_text())
    assert meta["params"] == {"num_videos": 6, "seed": 3, "size": [120, 160], "min_frames": 12, "max_frames": 20,
                              "test_fraction": 1 / 3}
    assert "combined" not in meta
    assert all(_shared_boxes(gt, v) == {} for v in gt["gttubes"])
    zero = tmp_path / "zero"
    generate_synthetic(str(zero), progress=False, multi_label=0.0, **TINY)
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            with open(path, "rb") as a, open(zero / os.path.relpath(path, root), "rb") as b:
                assert a.read() == b.read(), path
    # an existing set (meta.json without multi_label) is still the set of the default arguments: kept as it is
    assert synthetic.is_complete(str(root), params=synthetic._check_params(**TINY, test_fraction=1 / 3))
    assert synthetic.is_complete(str(root), params=synthetic._check_params(**TINY, test_fraction=1 / 3, multi_label=0))


def test_multi_label_changes_only_the_movers_it_combines(single, multi):
    """Same videos, same actors; an actor without a second action has the same tube; the combined movers keep their
    walk, and their boxes until the second action starts (a jumper is placed lower, to keep the jump in the frame)."""
    _, gt1 = single
    _, gt2 = multi
    assert gt1["nframes"] == gt2["nframes"] and gt1["train_videos"] == gt2["train_videos"]
    for i in range(TINY["num_videos"]):
        one, two = plan_video(index=i, **PLAN), plan_video(index=i, multi_label=1.0, **PLAN)
        for a, b in zip(one.actors, two.actors, strict=True):
            assert a.appearance == b.appearance and np.array_equal(a.jitter, b.jitter)
            if b.second is None:
                assert a.motion == b.motion
            elif CLASSES[b.second.label] == "jump":
                assert dataclasses.replace(a.motion, ground=0) == dataclasses.replace(b.motion, ground=0)
            else:
                assert a.motion == b.motion
            if b.second is None or CLASSES[b.second.label] != "jump":  # the same boxes until the second action
                before = b.second.start if b.second is not None else b.motion.end + 1
                tube1, tube2 = (_tube(gt, one.name, b) for gt in (gt1, gt2))
                assert np.array_equal(tube1[tube1[:, 0] < before], tube2[tube2[:, 0] < before]), one.name
                assert b.second is not None or np.array_equal(tube1, tube2)


def _tube(gt, video, actor):
    """The tube of ``actor``'s own (first) action: the one of its label spanning its frames."""
    m = actor.motion
    (tube,) = [t for t in gt["gttubes"][video][m.label] if (t[0, 0], t[-1, 0]) == (m.start, m.end)]
    return tube


def _combined(kind):
    for i in range(12):
        for k, actor in enumerate(plan_video(index=i, multi_label=1.0, **PLAN).actors):
            if actor.second is not None and CLASSES[actor.second.label] == kind:
                return plan_video(index=i, multi_label=1.0, **PLAN), k
    raise AssertionError(f"no mover that also does {kind}")


@pytest.mark.parametrize("kind", COMBINED)
def test_the_combined_actor_shows_both_motions(kind):
    plan, k = _combined(kind)
    actor = plan.actors[k]
    alone = dataclasses.replace(actor, second=None)  # the same mover, walking only
    m, s = actor.motion, actor.second
    scale = plan.size[0] / 240
    frames = range(s.start, s.end + 1)
    # it walks: the body axis (hip) moves by the mover's speed a frame, jitter (0.75 px each side) aside
    hips = [synthetic._skeleton(actor, t)[1][0][0] for t in (s.start - 1, s.end)]
    walked = m.direction * m.speed * (s.end - s.start + 1)
    assert abs((hips[1] - hips[0]) - walked) <= 1.5 * scale + 1e-9 and abs(walked) >= 2.5 * scale * 3
    boxes = [render_frame(plan, t, actors=[k], occluder=False)[1][k] for t in (s.start, s.end)]
    assert np.sign((boxes[1][0] + boxes[1][2]) - (boxes[0][0] + boxes[0][2])) == m.direction
    # the legs scissor as when walking alone: the leg segments are the walker's (spin: narrowed about the axis)
    for t in frames:
        both, walk = synthetic._skeleton(actor, t), synthetic._skeleton(alone, t)
        if kind != "spin":
            assert np.allclose(np.array(both[0][:4])[..., 0], np.array(walk[0][:4])[..., 0])
    # ... and it does the second action on those frames only
    height = actor.appearance.height
    if kind == "wave":  # one arm's hand, relative to its shoulder, swings up and down (0.4 h arm)
        def hand_dy(a, t):
            shoulder, hand = synthetic._skeleton(a, t)[0][4 + s.arm]
            return hand[1] - shoulder[1]
        swing = [hand_dy(actor, t) for t in frames]
        still = [hand_dy(alone, t) for t in frames]
        assert max(swing) - min(swing) > 0.3 * 0.4 * height
        assert max(still) - min(still) < 0.1 * 0.4 * height  # 2 degrees of jitter
        assert {-1.0, 1.0} <= set(np.sign(np.diff(swing)))  # up and down
    elif kind == "jump":  # the head rises above the walker's by up to the jump's height, and comes back
        lift = [synthetic._skeleton(alone, t)[2][1] - synthetic._skeleton(actor, t)[2][1] for t in frames]
        assert min(lift) >= -1e-9 and max(lift) > 0.2 * height and abs(lift[-1]) < 1e-6
    else:  # spin: the figure's width about its axis (0.4 to 1 of the front view) changes while it walks
        def hands_apart(a, t):
            limbs = synthetic._skeleton(a, t)[0]
            return limbs[5][1][0] - limbs[4][1][0]
        # over 96 degrees or more (8 frames of 12+), |cos| of the turn changes by a factor 1.25 at least
        assert len(frames) >= 8
        width = np.abs([hands_apart(actor, t) / hands_apart(alone, t) for t in frames])
        assert width.max() / width.min() > 1.2
    assert synthetic._skeleton(actor, m.start - 1) == synthetic._skeleton(alone, m.start - 1)  # idle: the same
    after_wave = s.end + 1 if kind in ("wave", "jump") and s.end < plan.nframes else None
    if after_wave is not None:  # a whole number of cycles: back to the walker's pose
        assert np.allclose(np.array(synthetic._skeleton(actor, after_wave)[0]),
                           np.array(synthetic._skeleton(alone, after_wave)[0]))


def test_ensure_tells_a_multi_label_set_from_a_single_label_one(tmp_path, caplog):
    root = str(tmp_path / "data")
    path = ensure_synthetic(root, progress=False, multi_label=0.5, **TINY)
    with open(os.path.join(root, "meta.json")) as f:
        assert json.load(f)["params"]["multi_label"] == 0.5
    assert ensure_synthetic(root, progress=False, multi_label=0.5, **TINY) == path
    with caplog.at_level(logging.WARNING, logger="s3d_det.data.synthetic"):
        assert ensure_synthetic(root, progress=False, **TINY) == path  # kept (never overwritten), with a warning
    assert "multi_label 0.5" in caplog.text and "multi_label 0.0" in caplog.text


@pytest.mark.parametrize("bad", [-0.1, 1.5, "0.5", True, float("nan")])
def test_bad_multi_label_is_refused(tmp_path, bad):
    with pytest.raises(ValueError, match="multi_label"):
        generate_synthetic(str(tmp_path / "data"), progress=False, multi_label=bad, **TINY)
    assert not (tmp_path / "data").exists()


def test_the_config_key_reaches_the_generator(tmp_path, monkeypatch):
    from s3d_det.config import ConfigError, get_cfg
    from s3d_det.engine import defaults

    cfg = get_cfg()
    cfg.DATASETS.NAME, cfg.DATASETS.ROOT = "synthetic", str(tmp_path / "data")
    cfg.DATASETS.SYNTHETIC_MULTI_LABEL = 0.25
    seen = {}

    def fake(root, **kwargs):
        seen.update(kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(synthetic, "ensure_synthetic", fake)
    with pytest.raises(KeyboardInterrupt):
        defaults.load_dataset_gt(cfg)
    assert seen["multi_label"] == 0.25
    cfg.DATASETS.SYNTHETIC_MULTI_LABEL = 2.0
    with pytest.raises(ConfigError, match="DATASETS.SYNTHETIC_MULTI_LABEL"):
        defaults.load_dataset_gt(cfg)


def test_a_combined_jump_stays_in_the_frame_and_high():
    """As a single jump: at its peak the feet are no higher than the highest row a standing figure's feet may take
    (1.2 h + 0.6 head + line + 2 px: the whole figure stays in the frame), and it is 0.3-0.4 h high unless the frame
    has less room (its ground placed lower to make room, the tallest jump less)."""
    jumps = 0
    for i in range(60):
        plan = plan_video(index=i, multi_label=1.0, **PLAN)
        for actor in plan.actors:
            if actor.second is None or CLASSES[actor.second.label] != "jump":
                continue
            a, s = actor.appearance, actor.second
            highest = 1.2 * a.height + 0.6 * a.head + a.thickness + 2
            room = plan.size[0] - a.thickness - 2 - highest
            jumps += 1
            assert 0.3 * a.height - 1e-9 <= s.amplitude <= 0.4 * a.height + 1e-9 or s.amplitude >= room - 1e-9
            for t in range(s.start, s.end + 1):
                limbs = synthetic._skeleton(actor, t)[0]
                feet = max(p[1] for segment in limbs[:4] for p in segment)
                assert feet >= highest - 0.75 * plan.size[0] / 240 - 1e-9, (plan.name, t)
    assert jumps >= 5


def test_command_line_option(tmp_path, capsys):
    out = tmp_path / "cli"
    assert synthetic.main(["--out", str(out), "--num-videos", "2", "--seed", "3", "--size", "160x120",
                           "--min-frames", "8", "--max-frames", "9", "--multi-label", "1/2", "--quiet"]) == 0
    assert capsys.readouterr().out.strip() == str(out / "synthetic-GT.pkl")
    assert json.loads((out / "meta.json").read_text())["params"]["multi_label"] == 0.5
    with pytest.raises(SystemExit) as e:
        synthetic.main(["--out", str(tmp_path / "bad"), "--multi-label", "3/2", "--quiet"])
    assert e.value.code == 2 and "multi_label" in capsys.readouterr().err and not (tmp_path / "bad").exists()
