"""Fuzzing the headers rewriter: Location, Content-Location, Refresh, Link and Set-Cookie Path.

What is proven, for every valid prefix and header values built around hostile URLs (as an
upstream could send them: no CR, LF or NUL, which the response parser refuses):

- no output value holds CR, LF or NUL, so none can start another header;
- a Location that a browser resolves to the upstream's origin is still same-origin afterwards;
- every value parses back to the same structure: Refresh keeps its delay, separator and quotes;
  Link keeps its targets' count and every parameter; Set-Cookie keeps its name, value and every
  attribute but Path, and Path changes only as the URL policy says.
"""

from __future__ import annotations

import re
from collections import Counter

from fuzz_parts import FUZZ, PUBLIC_HOST, UPSTREAM, hostile_urls, prefixes, resolve
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict

from rproxy.rewriters.chain import rewrite_response
from rproxy.rewriters.headers import HeaderRewriter
from rproxy.urls import UrlMapper

_FORBIDDEN = re.compile("[\r\n\0]")


def _clean(text: str) -> str:
    return _FORBIDDEN.sub("", text)


@st.composite
def _headers(draw: st.DrawFn) -> tuple[str, dict[str, str], dict[str, str]]:
    """(prefix, header values, the URLs inside them)."""
    prefix = draw(prefixes)

    def url(*, extra_forbidden: str = "") -> str:
        text = _clean(draw(hostile_urls(prefix)))
        return "".join(c for c in text if c not in extra_forbidden)

    urls = {
        "location": url(),
        "refresh": url(extra_forbidden="'\""),
        "link1": url(extra_forbidden="<>"),
        "link2": url(extra_forbidden="<>"),
        "cookie": url(extra_forbidden=";"),
    }
    delay = draw(st.sampled_from(["0", "5", " 1.5 "]))
    sep = draw(st.sampled_from([";", ",", "; ", ";\t"]))
    keyword = draw(st.sampled_from(["url=", "URL = ", ""]))
    quote = draw(st.sampled_from(["", "'", '"']))
    params = draw(st.sampled_from(['; rel="preload"; as=style', "; rel=next", ';title="a, <b>"']))
    attrs = draw(st.sampled_from(["; HttpOnly", "; Secure; SameSite=Lax", "; Domain=x.example"]))
    values = {
        "Location": urls["location"],
        "Content-Location": urls["location"],
        "Refresh": f"{delay}{sep}{keyword}{quote}{urls['refresh']}{quote}",
        "Link": f"<{urls['link1']}>{params}, <{urls['link2']}>; rel=next",
        "Set-Cookie": f"s=1; Path={urls['cookie']}{attrs}",
    }
    return prefix, values, urls


def _cookie_attributes(value: str) -> list[tuple[str, str]]:
    pairs = []
    for part in value.split(";"):
        name, _, attr = part.partition("=")
        pairs.append((name.strip().lower(), attr))
    return pairs


@FUZZ
@given(case=_headers())
def test_header_values_keep_their_structure_and_never_leave_their_header(
    case: tuple[str, dict[str, str], dict[str, str]],
) -> None:
    prefix, values, urls = case
    mapper = UrlMapper(prefix, UPSTREAM)
    out = rewrite_response(
        [HeaderRewriter()],
        CIMultiDict(values),
        status=302,
        method="GET",
        path="/",
        urls=mapper,
        public_host=PUBLIC_HOST,
        failures=Counter(),
    ).headers
    assert sorted(out) == sorted(values)
    for name, value in out.items():
        assert not _FORBIDDEN.search(value), (name, value)

    location = out["Location"]
    assert location == mapper.to_public(urls["location"], PUBLIC_HOST)
    assert out["Content-Location"] == location
    source = resolve(urls["location"], ("http", "127.0.0.1", 8888), "/")
    if source.origin == ("http", "127.0.0.1", 8888) and location != urls["location"]:
        seen = resolve(location, ("https", PUBLIC_HOST, 443), prefix)
        assert seen.origin == ("https", PUBLIC_HOST, 443), (location, seen)

    refresh_in, refresh_out = values["Refresh"], out["Refresh"]
    head = re.match(r"\s*[\d.]+\s*[;,]\s*(?:url\s*=\s*)?['\"]?", refresh_in, re.IGNORECASE)
    assert head is not None
    assert refresh_out.startswith(head[0]), "the delay, separator and quote are kept"

    links_in = re.findall(r"<([^>]*)>([^,<]*(?:,(?! <)[^,<]*)*)", values["Link"])
    links_out = re.findall(r"<([^>]*)>([^,<]*(?:,(?! <)[^,<]*)*)", out["Link"])
    assert [params for _, params in links_out] == [params for _, params in links_in]
    assert [target for target, _ in links_out] == [
        mapper.to_public(target, PUBLIC_HOST) for target, _ in links_in
    ]

    cookie_in = _cookie_attributes(values["Set-Cookie"])
    cookie_out = _cookie_attributes(out["Set-Cookie"])
    assert [name for name, _ in cookie_out] == [name for name, _ in cookie_in]
    for (name, before), (_, after) in zip(cookie_in, cookie_out, strict=True):
        if name != "path":
            assert after == before
        elif before.strip().startswith("/") and not before.strip().startswith("//"):
            assert after.strip() == mapper.to_public(before.strip(), PUBLIC_HOST)
        else:
            assert after == before
