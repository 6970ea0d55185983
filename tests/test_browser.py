"""What a browser sees, in headless Chromium through rproxy under a prefix: the demo, Streamlit,
and rproxy's own "Starting…" page, which reloads itself until the app answers.

Besides "everything loads", the DOM a page builds through rproxy is compared with the DOM it builds
when served directly: equal apart from the URLs the rewriters changed.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.async_api import Browser
from support import CHILD, StartProxy, StartUpstream, ready, running, supervisor_of

from examples.demo.app import make_demo_app

# One entry per element (depth, tag, attributes) and per non-blank text node (depth, "#text").
_OUTLINE = """() => {
  const out = [];
  const walk = (node, depth) => {
    if (node.nodeType === Node.ELEMENT_NODE) {
      out.push([depth, node.tagName, [...node.attributes].map(a => [a.name, a.value])]);
      for (const child of node.childNodes) walk(child, depth + 1);
    } else if (node.nodeType === Node.TEXT_NODE && node.textContent.trim()) {
      out.push([depth, "#text", node.textContent.trim()]);
    }
  };
  walk(document.documentElement, 0);
  return out;
}"""
Outline = list[tuple[int, str, object]]


async def _outline(browser: Browser, url: str, *, javascript: bool, settled: str = "") -> Outline:
    """The DOM of ``url`` once loaded (and once ``settled`` matches, when given)."""
    context = await browser.new_context(java_script_enabled=javascript)
    try:
        page = await context.new_page()
        await page.goto(url)
        if settled:
            await page.wait_for_selector(settled, timeout=60_000)
        return [
            (depth, tag, rest if isinstance(rest, str) else [tuple(pair) for pair in rest])
            for depth, tag, rest in await page.evaluate(_OUTLINE)
        ]
    finally:
        await context.close()


def _unprefixed(outline: Outline, replace: Callable[[str], str]) -> Outline:
    """``outline`` with ``replace`` applied to every attribute value and text."""
    return [
        (depth, tag, replace(rest) if isinstance(rest, str) else [(n, replace(v)) for n, v in rest])
        for depth, tag, rest in outline
    ]


async def test_the_demo_page_works_under_a_prefix(
    browser: Browser, start_upstream: StartUpstream, start_proxy: StartProxy
) -> None:
    proxy = await start_proxy(await start_upstream(make_demo_app()), prefix="/user/me/")
    page = await browser.new_page()
    loaded: list[tuple[int, str]] = []
    page.on("response", lambda response: loaded.append((response.status, response.url)))
    try:
        await page.goto(str(proxy / "user/me/"))
        await page.wait_for_selector("#event-log li", timeout=20_000)
        await page.wait_for_function(
            "document.getElementById('ws-status').textContent === 'connected'", timeout=20_000
        )
        await page.fill("#ws-message", "hello browser")
        await page.click("#ws-send")
        await page.wait_for_selector("#ws-log li:has-text('echo: hello browser')", timeout=20_000)
        logo_width = await page.evaluate("document.querySelector('header img').naturalWidth")
    finally:
        await page.close()  # ends the event stream and the WebSocket before the servers stop
    assert logo_width > 0
    urls = [url for _, url in loaded]
    assert all(status < 400 for status, _ in loaded), loaded
    assert all("/user/me/" in url for url in urls), urls
    assert any(url.endswith("/user/me/static/style.css") for url in urls)


async def test_the_demo_page_dom_matches_the_direct_page_apart_from_rewritten_urls(
    browser: Browser, start_upstream: StartUpstream, start_proxy: StartProxy
) -> None:
    upstream = await start_upstream(make_demo_app())
    proxy = await start_proxy(upstream, prefix="/user/me/")
    # Scripts off: the DOM is what the browser parsed from the (rewritten) HTML.
    direct = await _outline(browser, str(upstream), javascript=False)
    proxied = await _outline(browser, str(proxy / "user/me/"), javascript=False)
    assert proxied != direct  # the demo has root-relative URLs: some were rewritten
    assert _unprefixed(proxied, lambda value: value.replace("/user/me/", "/")) == direct
    assert len(direct) > 20


async def test_streamlit_renders_under_a_prefix(
    browser: Browser, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A real app's page: its HTML, scripts, styles and WebSocket all through rproxy, rewritten.
    monkeypatch.setenv("STREAMLIT_BROWSER_GATHER_USAGE_STATS", "false")
    streamlit = str(Path(sys.executable).parent / "streamlit")
    argv = ["--prefix", "/user/me/", "--ready-timeout", "60", "--", streamlit, "hello",
            "--server.port", "{port}", "--server.headless", "true"]  # fmt: skip
    async with running(*argv) as (url, launcher):
        await ready(launcher)
        page = await browser.new_page()
        loaded: list[tuple[int, str]] = []
        page.on("response", lambda response: loaded.append((response.status, response.url)))
        try:
            await page.goto(str(url / "user/me/"))
            await page.wait_for_selector("text=Welcome to Streamlit", timeout=60_000)
        finally:
            await page.close()
        # The page Streamlit's scripts build, once its script has run, directly and through rproxy.
        settled = "[data-test-script-state=notRunning] >> text=Welcome to Streamlit"
        direct_url = f"http://127.0.0.1:{launcher.endpoint.port}/"
        direct = await _outline(browser, direct_url, javascript=True, settled=settled)
        proxied = await _outline(browser, str(url / "user/me/"), javascript=True, settled=settled)
    assert len(loaded) > 10
    assert all(status < 400 for status, _ in loaded), [x for x in loaded if x[0] >= 400]

    def same_page(value: str) -> str:
        value = re.sub(r"stAppEmbeddingId-\w+", "stAppEmbeddingId-*", value)  # random per load
        value = re.sub(r"^:r\w+:$", ":r*:", value)  # React's useId(): in order of rendering
        value = value.replace(str(url / "user/me/"), "BASE/")
        return value.replace(direct_url, "BASE/")

    assert len(direct) > 100
    assert _settled(_unprefixed(proxied, same_page)) == _settled(_unprefixed(direct, same_page))


def _settled(outline: Outline) -> Outline:
    # Vite inserts <link rel=modulepreload> hints for chunks as they load: timing, not content.
    return [e for e in outline if e[1] != "LINK" or ("rel", "modulepreload") not in e[2]]


@pytest.mark.parametrize("fragment", ["", "#/experiments"], ids=["plain", "with-a-fragment"])
async def test_the_starting_page_reloads_itself_until_the_app_answers(
    browser: Browser, tmp_path: Path, fragment: str
) -> None:
    """Also at an address with a #... part (MLflow's, TensorBoard's links), where a meta refresh
    does nothing: the browser takes it for a move within the page. The page's script reloads it,
    the only script its Content-Security-Policy lets run."""
    go = tmp_path / "go"
    argv = ["--prefix", "/user/me/", "--", *CHILD, "--port", "{port}", "--wait-for", str(go)]
    async with running(*argv) as (url, launcher):
        await supervisor_of(launcher)
        page = await browser.new_page()
        refused: list[str] = []
        page.on("console", lambda message: refused.append(message.text))
        try:
            await page.goto(f"{url}/user/me/argv{fragment}")
            await page.wait_for_selector("text=The application is starting")
            async with page.expect_response(lambda r: r.status == 503):  # it reloaded itself
                pass
            go.touch()
            await ready(launcher)
            await page.wait_for_selector("text=child_app.py", timeout=30_000)  # the app's answer
            assert page.url == f"{url}/user/me/argv{fragment}"
        finally:
            await page.close()
    assert [text for text in refused if "Content Security Policy" in text] == []
