"""``--workers N``: more processes serving the same port (SO_REUSEPORT), to use more cores.

The process you start owns the wrapped command: it supervises the child and serves, as always.
Once the child is ready (at once when there is no command), it starts N-1 worker processes that
listen on the same port and proxy to the same upstream (the child's port or socket); the kernel
spreads new connections across all of them. Workers stop when the first process stops. While the
child restarts, workers answer 502 where the first process shows its 503 page.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import multiprocessing
from collections.abc import Mapping
from multiprocessing.process import BaseProcess

from rproxy.config import Config, Upstream

logger = logging.getLogger(__name__)


class WorkerPool:
    """N worker processes serving ``config`` on ``port``, proxying to ``upstreams``.

    ``upstreams`` maps each service's name ("default" for the main one) to where it listens:
    the workers proxy to the children the first process runs and start none of their own.
    """

    def __init__(self, config: Config, upstreams: Mapping[str, Upstream], port: int) -> None:
        services = tuple(
            dataclasses.replace(s, upstream=upstreams[s.name], child=None, start_on_request=False)
            if s.child is not None
            else s
            for s in config.services
        )
        self.config = dataclasses.replace(
            config,
            upstream=upstreams["default"],
            child=None,
            services=services,
            port=port,
            workers=1,
        )
        self._processes: list[BaseProcess] = []

    def start(self, count: int) -> None:
        context = multiprocessing.get_context("spawn")
        for _ in range(count):
            process = context.Process(target=_worker_main, args=(self.config,), daemon=True)
            process.start()
            self._processes.append(process)
        logger.info(
            "started %d more worker(s) on port %d: pids %s",
            count,
            self.config.port,
            ", ".join(str(p.pid) for p in self._processes),
        )

    async def stop(self, grace: float) -> None:
        for process in self._processes:
            process.terminate()
        for process in self._processes:
            await asyncio.to_thread(process.join, grace)
            if process.is_alive():
                process.kill()
                await asyncio.to_thread(process.join)


def _worker_main(config: Config) -> None:
    from rproxy.cli import run  # imported here: a spawned worker starts from a fresh interpreter

    raise SystemExit(run(config, reuse_port=True))
