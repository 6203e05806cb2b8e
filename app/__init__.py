"""The Gradio studio (pages, callbacks, plots). Calls ``engine`` and ``trainer`` through their
public API only; holds no model logic of its own."""
