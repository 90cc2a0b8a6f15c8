from .sampler import MixingRatioSampler

__all__ = ["MixingRatioSampler"]
