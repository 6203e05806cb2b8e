"""Training side of the studio.

Owns: data (the procedural FoleyWorld, footage ingestion: ``ingest``, ``dataset``), losses, pretraining,
fine-tuning (``lora``, ``lora_train``, ``finetune``, ``dpo``: LoRA flow matching and Flow-DPO, with the
``bench_guard`` FoleyBench check), reinforcement learning with the reward heads (``grpo``: Fast-GRPO /
Flow-GRPO, ``grpo_objective``, ``grpo_prompts``), the training of the FoleyBench metric models, the house
library (``house``) and the measurements of fine-tuning (``measure``); ``commands`` (a package, one module
per method) holds their ``launch.py world`` / ``train METHOD`` commands. May import ``engine``; never ``app``.
"""
