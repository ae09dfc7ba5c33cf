"""``graphc bench``: the lecture workloads on graphc and the engines it is measured against.

workloads.py defines the models once; engines.py builds each engine's training
step from them; runner.py interleaves the engines, checks their losses agree and
writes the table, JSON and chart; gpu.py is the CUDA-only part.
"""

from .runner import LossMismatchError, check_agreement, engines_for, markdown, run, run_workload
from .workloads import WORKLOADS, Workload

__all__ = ["WORKLOADS", "Workload", "LossMismatchError", "check_agreement", "engines_for", "markdown", "run",
           "run_workload"]
