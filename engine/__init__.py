"""Inference engine of the foley studio.

Owns: models, codec, encoders, samplers, CoT handling, planner, reward heads, media I/O, the
FoleyBench metrics, and the render pipeline. May import only the standard library and third-party
packages: never ``app`` or ``trainer``.
"""
