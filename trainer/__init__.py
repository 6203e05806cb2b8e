"""Training side of the studio.

Owns: data (the procedural FoleyWorld, footage ingestion), losses, pretraining, fine-tuning and the
training of the FoleyBench metric models. May import ``engine``; never ``app``.
"""
