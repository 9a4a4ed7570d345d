"""Diagnostic: the order classifier with ``pool_4a`` pooling disjoint pairs of time steps (kernel 2x3x3 instead
of 3x3x3, stride 2 kept), so that no window of the network is asymmetric under time reversal.

    S3D_DET_DATASETS=... python docs/experiments/order-classes/pairpool.py --config-file \\
        configs/cls/synthetic/i2d_tiny_order.yaml OUTPUT_DIR DIR [KEY VALUE ...]

Arguments as tools/train_cls.py; ``pairpool.py probe CONFIG WEIGHTS`` runs probe_reversal.py on such a network. With i2d this makes the network a function of the set of its (subsampled)
frames up to which frames conv_1a keeps: it should not tell the classes of a time-reversal pair apart.
docs/experiments/order-classes.md has what it measured."""
import os
import sys

from s3d_det.engine.defaults import default_argument_parser, launch_tool
from s3d_det.modeling import s3dg

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "..", "tools"))
sys.path.insert(0, os.path.dirname(__file__))
import probe_reversal  # noqa: E402
import train_cls  # noqa: E402

_init = s3dg.MaxPool.__init__


def _pairs(self, kernel_size, stride, **kwargs):
    if s3dg._triple(kernel_size) == (3, 3, 3) and s3dg._triple(stride) == (2, 2, 2):  # pool_4a
        kernel_size = (2, 3, 3)
    _init(self, kernel_size, stride, **kwargs)


s3dg.MaxPool.__init__ = _pairs

if __name__ == "__main__" and sys.argv[1:2] == ["probe"]:
    probe_reversal.main(sys.argv[2:])
elif __name__ == "__main__":
    launch_tool(train_cls.main, default_argument_parser(__doc__.split("\n\n")[0]).parse_args())
