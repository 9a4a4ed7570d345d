import collections, numpy as np
rng = np.random.default_rng(0)
Q = 8
def video(d, margin):
    lo = rng.uniform(0, 0.5); hi = lo + rng.uniform(0.4, 0.5)
    pre, post = int(rng.integers(12, 24)), int(rng.integers(12, 24))
    t = np.arange(pre + d + post)
    pose = lo + (hi - lo) * np.clip((t - pre + 1) / (d + 1), 0, 1)
    pose = pose + rng.uniform(-0.01, 0.01, len(t))  # idle jitter
    s, e = pre - margin, pre + d - 1 + margin
    return np.floor(pose * Q).astype(int), (s, e)
def feats(seq, k, offs, anchor):
    n = len(seq); p = [int(seq[min(max(k + o, 0), n - 1)]) for o in offs]
    a = (int(seq[k]),) if anchor else ()
    bag = tuple(sorted(p)) + a
    G = tuple(sorted([tuple(sorted(set(p[0:2]))), tuple(sorted(set(p[1:4])))])) + a
    return bag, G, tuple(p) + a
def bayes(cx, cy):
    keys = set(cx) | set(cy); tot = sum(cx.values()) + sum(cy.values())
    return sum(max(cx[k], cy[k]) for k in keys) / tot
I2D, S3D = [-8, -4, 0, 4], list(range(-8, 7, 2))
def run(dmin, dmax, margin, det, n=6000):
    C = [collections.Counter() for _ in range(6)]
    for _ in range(n):
        seq, (s, e) = video(int(rng.integers(dmin, dmax + 1)), margin)
        rev = seq[::-1]; L = len(seq); rs, re_ = L - 1 - e, L - 1 - s
        if det:
            groups = [(seq, k) for k in range(s, e + 1)], [(rev, k) for k in range(rs, re_ + 1)]
        else:
            clip, rclip = seq[s:e + 1], rev[rs:re_ + 1]; m = len(clip)
            st = range(0, max(0, m - 15) + 1) if m >= 15 else [(m - 15) // 2]
            groups = [(clip, a + 8) for a in st], [(rclip, a + 8) for a in st]
        for ci, g in enumerate(groups):
            for sq, k in g:
                b, G, _ = feats(sq, k, I2D, det); _, _, full = feats(sq, k, S3D, det)
                C[ci][b] += 1; C[2 + ci][G] += 1; C[4 + ci][full] += 1
    return [round(100 * bayes(C[i], C[i + 1]), 1) for i in (0, 2, 4)]
for d, m in [((10, 16), 0), ((10, 16), 6), ((2, 3), 6), ((2, 3), 8)]:
    print(f"ramp {d} margin {m}: det [bag+box, pool4a+box, s3dg-seq+box] {run(*d, m, True)}   "
          f"cls [bag, pool4a, s3dg-seq] {run(*d, m, False)}")
