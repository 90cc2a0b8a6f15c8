from .sampler import ThompsonTaskSampler, select_tasks

__all__ = ["ThompsonTaskSampler", "select_tasks"]
