"""The views (pages) of the seviz app. Each module has ``render(...)`` and draws what ``seviz`` computes.

The folder is not named ``pages``: Streamlit would turn a ``pages/`` folder beside
the entry script into its own multipage navigation.
"""
