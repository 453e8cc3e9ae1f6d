"""Checkpoint loaders: one per format, chosen by sniffing the file's content (see docs/formats-models.md).

Importing this package does not import torch; loading a model does.
"""
from __future__ import annotations

from gate.models.base import FORMATS, LoadedModel
from gate.models.loader import load_model
from gate.models.sniff import sniff_format

__all__ = ["FORMATS", "LoadedModel", "load_model", "sniff_format"]
