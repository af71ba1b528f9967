"""The screens, one script per page (app.py's st.navigation runs them): thin, read state, call the library, draw."""
