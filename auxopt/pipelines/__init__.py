"""Pipelines that chain studies: AutoSeM's task selection then ratio search."""

from auxopt.pipelines.autosem import AutoSeM, AutoSeMResult

__all__ = ["AutoSeM", "AutoSeMResult"]
