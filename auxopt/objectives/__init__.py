"""AANG (Dery et al., ICLR 2023): the generated auxiliary-objective space and online weighting.

* :class:`AuxObjective`, :class:`ObjectiveSpace`, :func:`why_illegal`, :data:`PRESETS` — the taxonomy,
  the legal space and its Optuna parameters (:mod:`auxopt.objectives.taxonomy`);
* :class:`AANG` — the trainer plugin (``TrainConfig(objectives=AANG(...))``): fixed objectives, or
  AANG's online weighting (:mod:`auxopt.objectives.aang`, :mod:`auxopt.objectives.weighting`);
* :class:`TiedLMHead`, :class:`ObjectiveLosses` — objective → loss (:mod:`auxopt.objectives.losses`).
"""

from auxopt.objectives.aang import AANG
from auxopt.objectives.aang_step import AANGStep
from auxopt.objectives.losses import ObjectiveLosses, TiedLMHead
from auxopt.objectives.taxonomy import (
    OUTPUTS,
    PRESETS,
    REPRESENTATIONS,
    STAGES,
    TRANSFORMS,
    AuxObjective,
    ObjectiveSpace,
    why_illegal,
)
from auxopt.objectives.weighting import OnlineWeights

__all__ = [
    "AANG",
    "OUTPUTS",
    "PRESETS",
    "REPRESENTATIONS",
    "STAGES",
    "TRANSFORMS",
    "AANGStep",
    "AuxObjective",
    "ObjectiveLosses",
    "ObjectiveSpace",
    "OnlineWeights",
    "TiedLMHead",
    "why_illegal",
]
