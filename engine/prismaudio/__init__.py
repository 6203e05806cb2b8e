"""The published PrismAudio model (FunAudioLLM/PrismAudio, ICLR 2026) as a model family of the engine.

This package owns everything that is specific to the official checkpoint: its architecture read from the
checkpoint's shapes (`architecture`), the DiT generator (`dit`), the three feature conditioners
(`conditioners`), the Oobleck VAE (`oobleck`), loading `prismaudio.ckpt` and `vae.ckpt` with a strict key
check (`checkpoint`), the family that renders through `engine.family.ModelFamily` (`model_family`) and
rendering from precomputed features (`features_render`). Written from the facts in the project's
OFFICIAL.md, not from the reference code. It imports only `engine` modules (never `app/` or `trainer/`).

Not here yet: VideoPrism / T5Gemma / Synchformer feature extraction (so `prepare` and `encode_cot` of the
family raise), the hub download, the safetensors cache, and training.
"""
