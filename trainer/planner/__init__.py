"""Training the default planner (``train``) and calibrating its per-class thresholds (``calibrate``)."""
