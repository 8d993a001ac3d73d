"""``python -m aiida_cgcnn.cli``: the same command, for launchers such as ``torchrun -m``."""

from . import main

main()
