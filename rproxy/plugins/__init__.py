"""Plugins that add a mode or a route to rproxy: JupyterHub login and activity reports
(jupyterhub.py, cookies.py, hub_activity.py), the VNC bridge and noVNC (vnc.py), and the desktop
that runs a private VNC server (desktop.py)."""
