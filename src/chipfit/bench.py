"""Deprecated alias of :mod:`chipfit.runner` (kept only while code migrates; do not import)."""

from chipfit.runner import *  # noqa: F403
from chipfit.runner import new_run, run_jobs  # noqa: F401
