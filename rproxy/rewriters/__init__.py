"""Response rewriters: fix the URLs an app emits so that they work under the proxy's prefix.

``base`` is the plugin API, ``registry`` finds and loads rewriters by entry point, and each
built-in rewriter (``headers``, ``css``, ``html``) is registered the same way a third-party
one is.
"""
