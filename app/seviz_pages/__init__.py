"""Pages of the seviz app. Each module has ``render(...)`` and draws what ``seviz`` computes.

The folder is not named ``pages``: Streamlit would turn that into its own
multipage navigation.
"""
