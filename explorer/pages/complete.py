import streamlit as st

st.title("complete")
st.info("This page is being built.")
