"""Bundled demo web app for trying rproxy by hand; the app itself lives in ``app.py``."""
