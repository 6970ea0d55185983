"""Find rewriters by entry point (group ``rproxy.rewriters``), load the enabled ones, in order.

Discovery reads entry-point metadata only; loading imports just the rewriters the configuration
enables, in the order it names them. A rewriter that cannot be loaded (missing, failing import,
not a Rewriter) stops start-up with a ConfigError that names it. rproxy's own rewriters are
registered in its pyproject exactly like a third party's, so there is one code path.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from importlib.metadata import EntryPoint, entry_points

from rproxy.errors import ConfigError
from rproxy.rewriters.base import Rewriter

logger = logging.getLogger(__name__)

GROUP = "rproxy.rewriters"
DEFAULT = ("headers", "css", "html")


def discover() -> dict[str, EntryPoint]:
    """Every installed rewriter by name, without importing any of them."""
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def load(names: Sequence[str]) -> list[Rewriter]:
    """Instances of the rewriters ``names``, in that order; ConfigError naming any that fails."""
    installed = discover()
    loaded: list[Rewriter] = []
    for name in names:
        entry = installed.get(name)
        if entry is None:
            known = ", ".join(sorted(installed)) or "none"
            raise ConfigError(f"rewriter {name!r} is not installed (installed: {known})")
        try:
            rewriter = entry.load()()
        except Exception as exc:
            raise ConfigError(f"rewriter {name!r} ({entry.value}) failed to load: {exc}") from exc
        for method in ("matches", "rewrite_headers", "open_body"):
            if not callable(getattr(rewriter, method, None)):
                raise ConfigError(f"rewriter {name!r} ({entry.value}) has no {method}() method")
        loaded.append(rewriter)
    if loaded:
        logger.info("rewriters: %s", ", ".join(names))
    return loaded
