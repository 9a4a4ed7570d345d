"""Deploying the detector: exportable modules (``modules``), exporting them to ONNX, TorchScript or a
``torch.export`` program (``export``), and running an exported file (``runtime``). docs/inference.md, "Exporting the
detector"."""
from .export import FORMATS, export_detector
from .modules import Clip3DForExport, DetectorForExport, FrameForExport, check_exportable
from .runtime import load_exported, read_meta

__all__ = ["Clip3DForExport", "DetectorForExport", "FrameForExport", "check_exportable", "FORMATS", "export_detector",
           "load_exported", "read_meta"]
