"""The Streamlit app, by room: pages/ (screens), ui/ (shared widgets), training/, figures/, state/ (README: Architecture)."""
