"""Data sets as NumPy arrays."""

from ._ocellus import pattern_classes as _pattern_classes
from ._ocellus import patterns

#: The class names of ``patterns``, by class index.
PATTERN_CLASSES = tuple(_pattern_classes())

__all__ = ["patterns", "PATTERN_CLASSES"]
