"""s3d_det: spatio-temporal action detection with S3D-G features (Xie et al., ECCV 2018)."""
__version__ = "0.1.0"
