"""Test-wide settings: offline model loading and passive OpenMP waiting (set before torch loads)."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
