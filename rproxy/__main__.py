"""``python -m rproxy``: the same as the ``rproxy`` console script."""

from __future__ import annotations

from rproxy.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
