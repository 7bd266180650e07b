"""Deprecated alias of :mod:`chipfit.discovery` (kept only while code migrates; do not import)."""

from chipfit.discovery import *  # noqa: F403
