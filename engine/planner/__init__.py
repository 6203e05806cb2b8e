"""The planners: the default (embedded) planner and its network, the multimodal-LLM backend, and the
CoT writing and parsing they share. Imports only ``engine`` modules."""
