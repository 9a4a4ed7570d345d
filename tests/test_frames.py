"""Frame sources: image folders and video files, frame numbers from 1, RGB, one decode per frame."""
import pickle

import cv2
import numpy as np
import pytest

from s3d_det.data.frames import FrameCache, ImageFolderSource, VideoFileSource, find_frames, open_frames

H, W = 24, 32


def colour(frame: int) -> tuple:
    """RGB of frame ``frame``: R encodes the frame number, G and B are fixed (so a BGR/RGB swap shows)."""
    return (10 * frame, 60, 200)


def write_folder(folder, n, ext="jpg"):
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(1, n + 1):
        rgb = np.full((H, W, 3), colour(k), np.uint8)
        assert cv2.imwrite(str(folder / f"{k:05d}.{ext}"), rgb[..., ::-1])
    return folder


def write_avi(path, n):
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (W, H))
    assert writer.isOpened()
    for k in range(1, n + 1):
        writer.write(np.full((H, W, 3), colour(k)[::-1], np.uint8))
    writer.release()
    return path


def assert_colours(frames: dict):
    for k, img in frames.items():
        assert img.shape == (H, W, 3) and img.dtype == np.uint8
        np.testing.assert_allclose(img.reshape(-1, 3).mean(0), colour(k), atol=3, err_msg=f"frame {k}")


def test_image_folder_reads_rgb_frames_once(tmp_path):
    src = ImageFolderSource(str(write_folder(tmp_path / "v", 6)))
    assert src.num_frames == 6 and src.decode_count == 0  # listing decodes nothing
    frames = src.read([5, 2, 2, 5, 3])
    assert sorted(frames) == [2, 3, 5]
    assert src.decode_count == 3
    assert_colours(frames)
    assert src.size == (H, W) and src.decode_count == 3  # known from the read


def test_image_folder_png(tmp_path):
    src = ImageFolderSource(str(write_folder(tmp_path / "v", 3, ext="png")))
    assert src.num_frames == 3
    np.testing.assert_array_equal(src.read([3])[3][0, 0], colour(3))  # png is lossless


def test_image_folder_errors_name_the_file(tmp_path):
    gap = write_folder(tmp_path / "gap", 4)
    (gap / "00002.jpg").unlink()
    with pytest.raises(ValueError, match=r"gap.*00002\.jpg is missing"):
        ImageFolderSource(str(gap)).num_frames
    mixed = write_folder(tmp_path / "mixed", 2)
    write_folder(mixed, 1, ext="png")
    with pytest.raises(ValueError, match="mixes .jpg and .png"):
        ImageFolderSource(str(mixed)).num_frames
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="empty holds no frames"):
        ImageFolderSource(str(tmp_path / "empty")).num_frames
    with pytest.raises(FileNotFoundError, match="nowhere does not exist"):
        ImageFolderSource(str(tmp_path / "nowhere")).read([1])
    bad = write_folder(tmp_path / "bad", 3)
    (bad / "00003.jpg").write_bytes(b"not a jpeg")
    src = ImageFolderSource(str(bad))
    with pytest.raises(ValueError, match=r"cannot decode image .*bad/00003\.jpg \(frame 3\)"):
        src.read([1, 3])
    with pytest.raises(ValueError, match=r"bad: frame 4 out of range.*1\.\.3"):
        src.read([4])


def test_video_file_forward_backward_and_seek(tmp_path):
    src = VideoFileSource(str(write_avi(tmp_path / "v.avi", 12)), seek_threshold=2)
    assert src.num_frames == 12 and src.size == (H, W)
    first = src.read([1, 3, 3])  # grabs 1, 2, 3 (2 is stepped over: gap 1 <= threshold)
    assert sorted(first) == [1, 3] and src.decode_count == 3
    assert_colours(first)
    later = src.read([9, 10])  # gap 9 - 4 = 5 > threshold: seek, then decode 9 and 10
    assert src.decode_count == 5
    assert_colours(later)
    back = src.read([2])  # behind the position: seek back
    assert src.decode_count == 6
    assert_colours(back)
    clone = pickle.loads(pickle.dumps(src))  # no VideoCapture travels
    assert_colours(clone.read([12]))
    src.close()


def test_video_file_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"missing\.avi does not exist"):
        VideoFileSource(str(tmp_path / "missing.avi")).num_frames
    junk = tmp_path / "junk.avi"
    junk.write_bytes(b"\0" * 100)
    with pytest.raises(ValueError, match=r"junk\.avi"):
        VideoFileSource(str(junk)).read([1])
    src = VideoFileSource(str(write_avi(tmp_path / "v.avi", 3)))
    with pytest.raises(ValueError, match=r"v\.avi: frame 0 out of range"):
        src.read([0])


def test_open_frames_prefers_the_folder(tmp_path):
    write_folder(tmp_path / "Frames" / "cls" / "a", 2)
    write_avi(tmp_path / "Videos" / "cls" / "a.avi", 3)
    write_avi(tmp_path / "Videos" / "cls" / "b.avi", 3)
    assert isinstance(open_frames(str(tmp_path), "cls/a"), ImageFolderSource)
    b = open_frames(str(tmp_path), "cls/b")
    assert isinstance(b, VideoFileSource) and b.num_frames == 3
    assert find_frames(str(tmp_path), "cls/c")[0] is None
    with pytest.raises(FileNotFoundError, match=r"'cls/c'.*Frames/cls/c and .*Videos/cls/c\.avi and .*c\.mp4"):
        open_frames(str(tmp_path), "cls/c")


def test_frame_cache_keeps_the_most_recent_frames_within_its_budget():
    frame = np.zeros((2, 5, 3), np.uint8)  # 30 bytes
    cache = FrameCache(max_bytes=70)  # room for two frames
    for key in "abc":
        cache.put(key, frame.copy())
    assert len(cache) == 2 and cache.nbytes == 60 and cache.get("a") is None  # "a", the oldest, went first
    assert cache.get("b") is not None  # "b" is now the most recent: "c" goes next
    cache.put("d", frame.copy())
    assert cache.get("c") is None and cache.get("b") is not None and cache.get("d") is not None
    assert (cache.hits, cache.misses) == (3, 2)
    cache.put("huge", np.zeros(71, np.uint8))  # larger than the whole budget: not kept, nothing evicted
    assert cache.get("huge") is None and len(cache) == 2
    with pytest.raises(ValueError, match="read-only"):
        cache.get("b")[0, 0, 0] = 1
    copy = pickle.loads(pickle.dumps(cache))
    assert len(copy) == 0 and copy.nbytes == 0 and copy.max_bytes == 70
    with pytest.raises(ValueError, match="at least 0"):
        FrameCache(-1)


@pytest.mark.parametrize("kind", ["folder", "video"])
def test_cached_source_decodes_each_frame_once(tmp_path, kind):
    if kind == "folder":
        src = ImageFolderSource(str(write_folder(tmp_path / "v", 6)))
    else:
        src = VideoFileSource(str(write_avi(tmp_path / "v.avi", 6)))
    plain = {f: a.copy() for f, a in src.read(range(1, 7)).items()}
    src.cache = FrameCache(max_bytes=10 ** 6)
    before = src.decode_count
    first = src.read([2, 3, 3, 4])
    assert src.decode_count - before == 3  # 2, 3 and 4 (the video seeks back to 2 and grabs three)
    second = src.read([5, 4, 3, 2])
    assert list(second) == [2, 3, 4, 5]  # in increasing order, as without a cache
    assert src.cache.hits == 3 and src.cache.misses == 4
    for f in (2, 3, 4):
        assert second[f] is first[f] and not second[f].flags.writeable
    for f, array in second.items():
        np.testing.assert_array_equal(array, plain[f])


def noisy_frames(folder, n, ext="jpg", size=(H, W)):
    """``n`` frames of seeded noise (so a JPEG has a long entropy-coded body to cut), named as in the real layout."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for k in range(1, n + 1):
        assert cv2.imwrite(str(folder / f"{k:05d}.{ext}"), rng.integers(0, 256, (*size, 3), dtype=np.uint8))
    return folder


def cut(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])


@pytest.mark.parametrize("ext", ["jpg", "png"])
def test_truncated_frame_is_an_error_naming_the_file(tmp_path, ext):
    root = tmp_path / "root"
    folder = noisy_frames(root / "Frames" / "walk" / "v1", 4, ext=ext)
    cut(folder / f"00003.{ext}")
    if ext == "jpg":
        assert cv2.imread(str(folder / "00003.jpg")) is not None  # what OpenCV does: a half-grey frame, no error
    src = open_frames(str(root), "walk/v1")
    assert sorted(src.read([1, 2, 4])) == [1, 2, 4]
    kind = "JPEG" if ext == "jpg" else "PNG"
    with pytest.raises(ValueError, match=rf"Frames/walk/v1/00003\.{ext}: truncated {kind} \(frame 3\)"):
        src.read([2, 3])
    (folder / f"00002.{ext}").write_bytes(b"")
    with pytest.raises(ValueError, match=rf"00002\.{ext}: empty file \(frame 2\): 0 bytes"):
        src.read([2])


def test_a_frame_of_another_size_names_the_file_and_both_sizes(tmp_path):
    folder = noisy_frames(tmp_path / "Frames" / "walk" / "v1", 4)
    noisy_frames(tmp_path / "small", 1, size=(H // 2, W))
    (tmp_path / "small" / "00001.jpg").replace(folder / "00003.jpg")
    src = open_frames(str(tmp_path), "walk/v1")
    with pytest.raises(ValueError,
                       match=rf"00003\.jpg is {H // 2}x{W} \(h x w\); expected {H}x{W}, the size of .*/00001\.jpg"):
        src.read([1, 2, 3])
    src = open_frames(str(tmp_path), "walk/v1")
    src.expect_size((H, W), "the ground truth's resolution")
    with pytest.raises(ValueError, match=rf"00003\.jpg is {H // 2}x{W} .*expected {H}x{W}, the ground truth's resol"):
        src.read([3])


class CountingSource(ImageFolderSource):
    """An image folder that records each call's frames (to see that a video file would be read forwards)."""

    def __init__(self, folder):
        super().__init__(folder)
        self.calls = []

    def _decode(self, wanted):
        self.calls.append(list(wanted))
        return super()._decode(wanted)


def test_frame_cache_read_holds_one_step_and_decodes_overlaps_once(tmp_path):
    """The step window of video inference: ``read(..., retain=True)`` keeps exactly the frames of the last call,
    decodes only those it lacks (in increasing order, one call), and ``prepare`` runs once per decoded frame."""
    src = CountingSource(str(write_folder(tmp_path / "v", 8)))
    prepared = []

    def prepare(frame, image):
        prepared.append(frame)
        return image[::2, ::2].copy()

    cache = FrameCache()  # no byte budget: bounded by retain
    got = cache.read(src, [3, 1, 2, 2], prepare=prepare, tag="half", retain=True)
    assert list(got) == [1, 2, 3] and got[1].shape == (H // 2, W // 2, 3)
    got = cache.read(src, [4, 2, 3, 5], prepare=prepare, tag="half", retain=True)
    assert list(got) == [2, 3, 4, 5] and len(cache) == 4 and cache.max_held == 4
    assert src.calls == [[1, 2, 3], [4, 5]] and prepared == [1, 2, 3, 4, 5]
    assert (cache.hits, cache.misses) == (2, 5)
    got = cache.read(src, [7], prepare=prepare, tag="half", retain=True)
    assert len(cache) == 1 and cache.max_held == 4  # frames 2..5 dropped
    np.testing.assert_array_equal(got[7], src.read([7])[7][::2, ::2])
    with pytest.raises(ValueError, match="read-only"):
        got[7][0, 0, 0] = 1
    # with a byte budget the least recently used go first, as for the datasets' raw frames
    small = FrameCache(max_bytes=2 * H * W * 3)
    small.read(src, [1, 2, 3])
    assert len(small) == 2 and small.get((src.path, 1, None)) is None
