"""Integrations of auxopt's methods with other training frameworks.

* :mod:`auxopt.integrations.transformers` — :class:`~auxopt.integrations.transformers.MultiTaskTrainer`,
  a ``transformers.Trainer`` that mixes a primary and auxiliary datasets by ratios, optionally with
  ATTITTUD's decomposed update, and reports the primary's dev metric to Optuna.

Submodules load on import only (``import auxopt.integrations.transformers``), so that ``auxopt``
itself does not import transformers.
"""
