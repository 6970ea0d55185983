"""rproxy: a streaming reverse proxy that puts any web app behind one front door.

The package's public entry points are the ``rproxy`` console script and :func:`rproxy.app.make_app`.
Nothing is loaded or started at import time.
"""

from __future__ import annotations

__version__ = "0.1.0"
