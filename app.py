"""VAE Explorer: `streamlit run app.py`. Page config, the sidebar every page shares, and navigation."""

import streamlit as st

from explorer import runtime_settings
from explorer.ui.sidebar import build_sidebar

st.set_page_config(page_title="VAE Explorer", page_icon="🧭", layout="wide")
runtime_settings.apply()  # the process-wide settings of a shared server, each with its reason there

PAGES = [
    st.Page("explorer/pages/overview.py", title="Overview", icon="🏠", default=True),
    st.Page("explorer/pages/train.py", title="Train", icon="🏋️"),
    st.Page("explorer/pages/latent_map.py", title="Latent map", icon="🗺️"),
    st.Page("explorer/pages/interpolate.py", title="Interpolate", icon="↔️"),
    st.Page("explorer/pages/samples.py", title="Samples", icon="🎲"),
    st.Page("explorer/pages/complete.py", title="Complete", icon="🧩"),
    st.Page("explorer/pages/posterior.py", title="Posterior", icon="🎯"),
    st.Page("explorer/pages/how_it_works.py", title="How it works", icon="⚙️"),
]
PAGES_WITHOUT_MODEL = {"train"}  # Train makes models: it must open when there is none to pick

page = st.navigation(PAGES)
if page.url_path in PAGES_WITHOUT_MODEL:
    runtime_settings.app_torch()  # its models are built at once; the other pages load torch through chosen_model()
else:
    build_sidebar()  # once per run, before the page: upload, model picker, data note, share box
page.run()
