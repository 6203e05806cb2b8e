"""The Gradio studio: the page layout (``studio``), the actions behind its controls (``callbacks``), the
project store (``projects``: SQLAlchemy models, file layout, staged writes), plots (``plots``) and server
settings (``settings``). Calls ``engine`` and ``trainer`` through their public API only; holds no model
logic of its own."""
