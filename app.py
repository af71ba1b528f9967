"""VAE Explorer: `streamlit run app.py`. Page config, the sidebar every page shares, and navigation."""

import streamlit as st

from explorer import runtime_settings, server_guard
from explorer.ui.admission import admit_or_turn_away, first_render_turn
from explorer.ui.sidebar import build_sidebar

server_guard.install()  # before any widget reads a value a visitor sent
st.set_page_config(page_title="VAE Explorer", page_icon="🧭", layout="wide")
runtime_settings.apply()  # the process-wide settings of a shared server, each with its reason there
admit_or_turn_away()  # before anything heavy: past the server's capacity, a light "class is full" page

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
# Streamlit greys captions to 60% of the text colour: 3.9:1 on white, under WCAG AA's 4.5:1 (axe-core's
# color-contrast). 80% reads 7:1 here, and follows the dark theme's text colour too.
st.html("<style>[data-testid='stCaptionContainer'] {color: inherit; opacity: 0.8}</style>")
with first_render_turn(page.url_path):  # a class arriving at once builds its pages a few at a time
    if page.url_path in PAGES_WITHOUT_MODEL:
        runtime_settings.app_torch()  # its models are built at once; the others load torch through chosen_model()
    else:
        build_sidebar()  # once per run, before the page: upload, model picker, data note, share box
    page.run()
