"""Pure figure and picture builders: arrays in, plotly figures, Vega-Lite specs, pixel arrays or PNG/GIF bytes out (no Streamlit)."""
