"""Models: encoders (CGCNN, ...) with a shared readout :class:`~aiida_cgcnn.models.heads.Head`."""

from .cgcnn import CGCNN
from .heads import POOLINGS, Head, HeadOutput
from .registry import ARCHITECTURES, build_model

__all__ = ["ARCHITECTURES", "CGCNN", "POOLINGS", "Head", "HeadOutput", "build_model"]
