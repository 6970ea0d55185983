"""Says, once per path, when a page under the prefix asks for a path outside it.

That request gets rproxy's 404, and the page is broken: the app built a root-relative URL where
rproxy's rewriting cannot see it (in JavaScript, say), or it does not know its prefix. The
``Referer`` tells such a request from a scanner's: only a request whose page was under the
prefix is worth a WARNING, with the likely cause and where the fix is (docs/apps.md), except the
icons a browser asks for at the site's root by itself (``/favicon.ico``: no app can move that
request). Each path is told once, up to ``limit`` paths; the rest go to DEBUG. This module only
logs.
"""

from __future__ import annotations

import logging

from yarl import URL

__all__ = ["EscapedPaths"]

logger = logging.getLogger(__name__)
# asked for by browsers at the root whatever the page says, when it names no icon of its own
_BROWSERS_OWN = frozenset(
    ("/favicon.ico", "/apple-touch-icon.png", "/apple-touch-icon-precomposed.png")
)


class EscapedPaths:
    """The paths outside the prefix already told about, for one application."""

    def __init__(self, prefix: str, limit: int = 1000) -> None:
        self._prefix = prefix
        self._limit = limit
        self._told: set[str] = set()

    def note(self, method: str, path: str, referer: str | None) -> None:
        """A request for ``path`` (outside the prefix) that rproxy answers with 404."""
        page = _path_of(referer) or ""
        telling = (
            page.startswith(self._prefix)
            and path not in self._told
            and path.partition("?")[0] not in _BROWSERS_OWN
            and len(self._told) < self._limit
        )
        if not telling:
            logger.debug("404 for %s %r: outside the prefix %s", method, path[:200], self._prefix)
            return
        self._told.add(path)
        logger.warning(
            "404 for %s %s, asked for by the page %s: it is outside the prefix %s. The app "
            "builds URLs without its prefix where rproxy cannot rewrite them (in JavaScript): "
            "give the app its prefix option, or keep the prefix (--no-strip-prefix); see "
            "docs/apps.md",
            method,
            path[:200],
            page[:200],
            self._prefix,
        )


def _path_of(referer: str | None) -> str | None:
    if not referer:
        return None
    try:
        return URL(referer).raw_path
    except ValueError:
        return None
