"""Test configuration: pytester for plugin tests; an isolated cache and checkpoint store per session."""

from __future__ import annotations

pytest_plugins = ["pytester"]
