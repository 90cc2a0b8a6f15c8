"""Multi-task training: configs, task schedules, the loop. No Optuna in here."""

from auxopt.train.checkpoint import Checkpoint, CheckpointStore, FolderCheckpointStore
from auxopt.train.config import TrainConfig, TrainResult
from auxopt.train.loop import Reporter, evaluate, resolve_device, train
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
    "RoundRobinSchedule",
    "TaskSchedule",
    "ThompsonSchedule",
    "TrainConfig",
    "TrainResult",
    "evaluate",
    "make_schedule",
    "resolve_device",
    "train",
]
