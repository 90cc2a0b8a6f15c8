"""Multi-task training: configs, task schedules, the loop. No Optuna in here."""

from auxopt.train.callbacks import Reporter, ReporterCallback, TrainCallback
from auxopt.train.checkpoint import Checkpoint, CheckpointStore, FolderCheckpointStore
from auxopt.train.config import StepPlugin, TrainConfig, TrainResult
from auxopt.train.loop import evaluate, train
from auxopt.train.runtime import resolve_device
from auxopt.train.schedules import (
    OnlineThompson,
    ProportionalSchedule,
    RoundRobinSchedule,
    TaskSchedule,
    ThompsonSchedule,
    make_schedule,
)

__all__ = [
    "Checkpoint",
    "CheckpointStore",
    "FolderCheckpointStore",
    "OnlineThompson",
    "ProportionalSchedule",
    "Reporter",
    "ReporterCallback",
    "RoundRobinSchedule",
    "StepPlugin",
    "TaskSchedule",
    "ThompsonSchedule",
    "TrainCallback",
    "TrainConfig",
    "TrainResult",
    "evaluate",
    "make_schedule",
    "resolve_device",
    "train",
]
