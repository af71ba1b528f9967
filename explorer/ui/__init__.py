"""Streamlit widgets shared by pages: the sidebar model picker, digit picker, drawing canvas, latent plane, cached resources."""
