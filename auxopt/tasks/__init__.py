"""Tasks: labelled datasets with splits, kinds and metrics; loading; synthetic benchmark tasks."""

from auxopt.tasks.loading import build_task, data_dirs, load_task, reload_task
from auxopt.tasks.metrics import METRICS, get_metric
from auxopt.tasks.overlap import (
    ContaminationWarning,
    Overlap,
    OverlapReport,
    check_overlap,
    normalize_text,
)
from auxopt.tasks.synthetic import SyntheticSuite, make_synthetic_suite
from auxopt.tasks.task import Split, Task

__all__ = [
    "METRICS",
    "ContaminationWarning",
    "Overlap",
    "OverlapReport",
    "Split",
    "SyntheticSuite",
    "Task",
    "build_task",
    "check_overlap",
    "data_dirs",
    "get_metric",
    "load_task",
    "make_synthetic_suite",
    "normalize_text",
    "reload_task",
]
