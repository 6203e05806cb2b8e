"""The Gradio studio: the page layout (``studio``), the actions behind its controls (``studio_actions``;
``train_actions`` for the Train page, over the training runs of ``train_runs``), the project store
(``projects``: SQLAlchemy models, file layout, staged writes), plots (``plots``), server settings
(``settings``), who may call the server (``guard``: own page only, file route, login backoff) and the
copies of media the web server makes (``served``). Calls ``engine`` and ``trainer`` through their public
API only; holds no model logic of its own."""
