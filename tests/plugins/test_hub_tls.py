"""JupyterHub's internal TLS: with JUPYTERHUB_SSL_* rproxy serves https and wants a client cert.

Certificates are made for the test with the openssl command (``support.make_certificates``): a
CA, a server certificate for 127.0.0.1 and a client certificate (what the hub's proxy presents).
"""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from support import StartUpstream, free_port, make_certificates

from rproxy.serving import serve
from rproxy.sources import load_config


async def test_internal_tls_serves_https_to_clients_with_a_certificate(
    tmp_path: Path, start_upstream: StartUpstream
) -> None:
    make_certificates(tmp_path)
    upstream = await start_upstream(web.Application())
    port = free_port()
    environ = {
        "JUPYTERHUB_API_TOKEN": "t",
        "JUPYTERHUB_SSL_KEYFILE": str(tmp_path / "server.key"),
        "JUPYTERHUB_SSL_CERTFILE": str(tmp_path / "server.crt"),
        "JUPYTERHUB_SSL_CLIENT_CA": str(tmp_path / "ca.crt"),
    }
    options = {"upstream": str(upstream), "ip": "127.0.0.1", "port": port, "authtype": "none",
               "last_activity_interval": 0}  # fmt: skip
    stop = asyncio.Event()
    server = asyncio.create_task(serve(load_config(options, environ), stop=stop))
    trusted = ssl.create_default_context(cafile=str(tmp_path / "ca.crt"))
    with_cert = ssl.create_default_context(cafile=str(tmp_path / "ca.crt"))
    with_cert.load_cert_chain(str(tmp_path / "client.crt"), str(tmp_path / "client.key"))
    url = f"https://127.0.0.1:{port}/api"
    try:
        async with aiohttp.ClientSession() as http:
            async with asyncio.timeout(30):
                while True:  # until serve() listens
                    try:
                        async with http.get(url, ssl=with_cert) as response:
                            assert response.status == 200
                            assert (await response.json())["name"] == "rproxy"
                            break
                    except aiohttp.ClientConnectorError:
                        await asyncio.sleep(0.05)
            with pytest.raises(aiohttp.ClientError):  # no client certificate: no connection
                async with http.get(url, ssl=trusted) as response:
                    await response.read()
            with pytest.raises(aiohttp.ClientError):  # plain http is not spoken
                async with http.get(f"http://127.0.0.1:{port}/api") as response:
                    await response.read()
    finally:
        stop.set()
        assert await asyncio.wait_for(server, timeout=30) == 0
