"""LoRA adapters on a bundle's generator (``adapters``) and the training loop that LoRA fine-tuning and
Flow-DPO share (``loop``)."""
