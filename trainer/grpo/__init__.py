"""Reinforcement learning with the reward heads: Fast-GRPO / Flow-GRPO (``learn``), the pieces of its
objective (``objective``), its prompts (``prompts``) and the Fast-against-Flow comparison (``compare``)."""
