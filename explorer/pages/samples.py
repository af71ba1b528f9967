import streamlit as st

st.title("samples")
st.info("This page is being built.")
