"""Multi-task training: configs, task schedules, the loop. No Optuna in here."""

from auxopt.train.config import TrainConfig, TrainResult
from auxopt.train.loop import Reporter, evaluate, resolve_device, train
from auxopt.train.schedules import (
    ProportionalSchedule,
    RoundRobinSchedule,
    TaskSchedule,
    make_schedule,
)

__all__ = [
    "ProportionalSchedule",
    "Reporter",
    "RoundRobinSchedule",
    "TaskSchedule",
    "TrainConfig",
    "TrainResult",
    "evaluate",
    "make_schedule",
    "resolve_device",
    "train",
]
