"""The Train page's engine, no Streamlit: the background job (jobs.py), its snapshot history (history.py), exports."""
