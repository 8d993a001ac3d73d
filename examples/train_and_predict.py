"""Train and predict through AiiDA with provenance: ``verdi run examples/train_and_predict.py``.

Works on a fresh ``verdi presto`` profile (SQLite, no broker needed for ``run``, localhost computer).
"""

from aiida_cgcnn.workflows.demo import run_aiida_demo

run_aiida_demo()
