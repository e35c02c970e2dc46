"""The seviz Streamlit app: explore stores, the paper's figures, verdicts and their verification.

Rooms: :mod:`~seviz.app.launcher` (``seviz app``: paths, the ``streamlit run`` command),
:mod:`~seviz.app.main` (the Streamlit entry script), :mod:`~seviz.app.views` (one
module per page). Importing this package imports neither Streamlit nor torch.
"""

from seviz.app.launcher import app_script, launch_app

__all__ = ["app_script", "launch_app"]
