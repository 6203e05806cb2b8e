"""Training side of the studio.

Owns: data (the procedural FoleyWorld, footage ingestion), losses, pretraining, fine-tuning, reinforcement
learning with the reward heads (``grpo``: Fast-GRPO / Flow-GRPO, ``grpo_objective``, ``grpo_prompts``) and
the training of the FoleyBench metric models. May import ``engine``; never ``app``.
"""
