"""The Streamlit app: pages, cached resources, figure builders and small widgets."""
