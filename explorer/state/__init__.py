"""What the app knows beyond one screen: which models it can show, how two compare, a view's share link, a click."""
