"""LoRA adapters on a bundle's generator (``adapters``) and the training method that LoRA fine-tuning and
Flow-DPO share (``method``, run by `trainer.loop`)."""
