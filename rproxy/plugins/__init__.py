"""Plugins that add a mode or a route to rproxy: JupyterHub authentication and activity."""
