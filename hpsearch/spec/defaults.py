"""Defaults that several layers name: where studies are stored unless a file or flag says."""

from __future__ import annotations

DEFAULT_STORAGE = "sqlite:///hpsearch.db"
