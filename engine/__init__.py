"""Inference engine of the foley studio.

Owns: models, codec, encoders, samplers, CoT handling, planner, reward heads, media I/O, the
FoleyBench metrics, the render pipeline, and the inference commands of ``launch.py`` (``commands``).
May import only the standard library and third-party packages: never ``app`` or ``trainer``.
"""
