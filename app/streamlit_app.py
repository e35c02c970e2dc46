"""The seviz app as a plain Streamlit script, for ``streamlit run app/streamlit_app.py -- [STORE ...] [--root DIR]``.

``seviz app`` is the usual way to start it; this file is for hosts that run a
script from the repository (Streamlit Community Cloud and the like). The app
itself is :mod:`seviz.app.main`.
"""

from seviz.app.main import main

main()
