"""FoleyWorld: procedurally rendered videos whose sounds are synthesised from the same scene
parameters, with exact ground truth for what sounds, when, how and where.

Modules: ``classes`` (the sound classes), ``scene`` (parameters and the seeded sampler), ``synth``
(stereo audio), ``video`` (frames), ``cot`` (the four reasoning blocks), ``splits`` (seeded splits
and the writer of a split to disk).
"""
