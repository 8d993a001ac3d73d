"""The ``aiida-cgcnn`` command. Its core commands need no AiiDA profile: CalcJobs run them on remote nodes.

Exit codes (also written to ``status.json`` in the output directory, for parsers):

== ====================================================================
0  completed
1  unexpected error (a bug: please report it with the traceback)
2  usage error (bad option or argument)
3  stopped before the time budget ran out; a checkpoint to resume from is saved
4  invalid input: dataset, structures, checkpoint or settings (the message names them)
5  the training loss diverged (NaN or infinite)
6  out of memory (GPU or host)
7  an input file that should exist does not (e.g. a dataset expected in a remote cache)
8  the disk (or quota) of the output directory is full; the checkpoints written before are intact
== ====================================================================
"""

from .common import EXIT_CODES
from .main import main

__all__ = ["EXIT_CODES", "main"]
