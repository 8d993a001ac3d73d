"""aiida-cgcnn: crystal graph neural networks as provenance-tracked AiiDA citizens.

The core (``graph``, ``models``, ``training``, ``predict``) imports no AiiDA: it runs on remote
GPU nodes through the ``aiida-cgcnn`` command. The AiiDA layer wraps it.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
