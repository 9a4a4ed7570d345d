import collections, numpy as np
import os  # noqa: E402
exec(open(os.path.join(os.path.dirname(os.path.abspath(__file__)), 'order_classes_sim_a.py')).read().split("def run(")[0])  # video(), feats(), bayes(), I2D, S3D
rng = np.random.default_rng(1)
def video2(d):
    lo = rng.uniform(0, 0.5); hi = lo + rng.uniform(0.4, 0.5)
    pre, post = int(rng.integers(20, 30)), int(rng.integers(20, 30))
    t = np.arange(pre + d + post)
    pose = lo + (hi - lo) * np.clip((t - pre + 1) / (d + 1), 0, 1) + rng.uniform(-0.01, 0.01, len(t))
    return np.floor(pose * Q).astype(int), pre, pre + d - 1
def det(dmin, dmax, m0, m1, anchor=True, n=5000):
    C = [collections.Counter() for _ in range(6)]
    for _ in range(n):
        seq, t0, t1 = video2(int(rng.integers(dmin, dmax + 1))); L = len(seq); rev = seq[::-1]
        groups = [(seq, k) for k in range(t0 - m0, t1 + m1 + 1)], [(rev, k) for k in range(L-1-t1 - m0, L-1-t0 + m1 + 1)]
        for ci, g in enumerate(groups):
            for sq, k in g:
                b, G, _ = feats(sq, k, I2D, anchor); _, _, full = feats(sq, k, S3D, anchor)
                C[ci][b] += 1; C[2 + ci][G] += 1; C[4 + ci][full] += 1
    return [round(100 * bayes(C[i], C[i + 1]), 1) for i in (0, 2, 4)]
def cls(dmin, dmax, hmin, hmax, n=5000, test=False):
    C = [collections.Counter() for _ in range(6)]
    for _ in range(n):
        seq, t0, t1 = video2(int(rng.integers(dmin, dmax + 1))); L = len(seq); rev = seq[::-1]
        a, b = int(rng.integers(hmin, hmax + 1)), int(rng.integers(hmin, hmax + 1))
        clip = seq[t0 - a:t1 + b + 1][:32]; rclip = clip[::-1]; m = len(clip)
        st = [0, m - 15] if test else range(0, m - 14)
        for ci, c in enumerate((clip, rclip)):
            for s in st:
                bg, G, _ = feats(c, s + 8, I2D, False); _, _, full = feats(c, s + 8, S3D, False)
                C[ci][bg] += 1; C[2 + ci][G] += 1; C[4 + ci][full] += 1
    return [round(100 * bayes(C[i], C[i + 1]), 1) for i in (0, 2, 4)]
print("det, ramp 2-4, annotated ramp+-4 [bag+box, pool4a+box, s3dg]", det(2, 4, 4, 4))
print("det, ramp 2-4, annotated ramp+-4, box not pose-dependent", det(2, 4, 4, 4, anchor=False))
print("det, ramp 6-10, annotated ramp+-4", det(6, 10, 4, 4), "no box", det(6, 10, 4, 4, anchor=False))
print("cls, ramp 2-4, holds 7-14 [bag, pool4a, s3dg]", cls(2, 4, 7, 14))
print("cls, ramp 6-10, holds 7-14", cls(6, 10, 7, 14))
