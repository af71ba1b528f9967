"""VAE Explorer: `streamlit run app.py`. Only page config and navigation live here."""

import streamlit as st

st.set_page_config(page_title="VAE Explorer", page_icon="🧭", layout="wide")

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

st.navigation(PAGES).run()
