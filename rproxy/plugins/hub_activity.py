"""Tell JupyterHub when this server was last used, so its idle culler sees real activity.

Every ``--last-activity-interval`` seconds, a POST to JUPYTERHUB_ACTIVITY_URL carries the time an
admitted client last used the app (``ProxyMetrics.used``: a forwarded request or upgrade, a
WebSocket message; nothing rproxy answered itself), or "now" with ``--force-alive`` (the default,
as in jhsingle-native-proxy). Nothing is sent when nothing happened since the last report. A failed
report is logged and retried sooner (1 s, 2 s, 4 s ... up to the interval). The reporter runs in
the background on its own small client session and never blocks a request.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from datetime import UTC, datetime

import aiohttp

from rproxy.config import HubOptions
from rproxy.errors import RproxyError
from rproxy.metrics import ProxyMetrics

logger = logging.getLogger(__name__)


class ActivityReporter:
    def __init__(self, hub: HubOptions, metrics: ProxyMetrics) -> None:
        self._hub = hub
        self._metrics = metrics
        self._reported = 0.0
        self._ssl = _client_ssl(hub)
        self.reports = 0  # successful reports, for the curious (and the tests)

    async def run(self) -> None:
        """Report until cancelled."""
        interval = self._hub.last_activity_interval
        if not interval or not self._hub.activity_url:
            return
        async with aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=30), trust_env=False
        ) as session:
            failures = 0
            while True:
                await asyncio.sleep(min(interval, 2**failures) if failures else interval)
                try:
                    await self.report_once(session)
                except (aiohttp.ClientError, TimeoutError, OSError, ActivityRefused) as exc:
                    failures = min(failures + 1, 16)
                    logger.warning("could not report activity to the hub: %s", exc)
                else:
                    failures = 0

    async def report_once(self, session: aiohttp.ClientSession) -> bool:
        """Send one report if there is news; True when one was sent."""
        last = time.time() if self._hub.force_alive else self._metrics.last_activity
        if not last or last <= self._reported:
            return False
        stamp = datetime.fromtimestamp(last, UTC).isoformat().replace("+00:00", "Z")
        body = {"servers": {self._hub.server_name: {"last_activity": stamp}},
                "last_activity": stamp}  # fmt: skip
        async with session.post(
            self._hub.activity_url,
            json=body,
            headers={"Authorization": f"token {self._hub.api_token}"},
            ssl=self._ssl,
        ) as response:
            if response.status >= 400:
                raise ActivityRefused(f"{response.status} {response.reason}")
        self._reported = last
        self.reports += 1
        return True


class ActivityRefused(RproxyError):
    """The hub answered the activity report with an error status."""


def _client_ssl(hub: HubOptions) -> ssl.SSLContext | bool:
    if not hub.ssl_certfile:
        return True
    context = ssl.create_default_context(cafile=hub.ssl_client_ca or None)
    context.load_cert_chain(hub.ssl_certfile, hub.ssl_keyfile)
    return context
