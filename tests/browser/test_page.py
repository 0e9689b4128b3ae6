"""The chat page is served with its assets, and nothing on it comes from another host."""

import re

import pytest
import requests

from tests.support.http_helpers import TIMEOUT


def test_page_and_its_assets_are_served_locally(tiny_server):
    page = requests.get(tiny_server.url("/"), timeout=TIMEOUT)
    assert page.status_code == 200
    assert "tiny" in page.text
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert assets and all(a.startswith("/static/") for a in assets)
    for asset in assets:
        assert requests.get(tiny_server.url(asset), timeout=TIMEOUT).status_code == 200


def test_the_page_has_no_inline_script_style_or_handler(tiny_server):
    # The Content-Security-Policy would refuse them.
    page = requests.get(tiny_server.url("/"), timeout=TIMEOUT).text
    assert not re.search(r"<script(?![^>]*\ssrc=)|<style|\sstyle=|\son\w+=", page)


@pytest.mark.parametrize("path", ["/", "/static/chat.js", "/static/chat.css", "/health", "/no-such-page"])
def test_every_response_forbids_foreign_code_framing_and_sniffing(tiny_server, path):
    headers = requests.get(tiny_server.url(path), timeout=TIMEOUT).headers
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    policy = dict(rule.strip().split(" ", 1) for rule in headers["Content-Security-Policy"].split(";"))
    assert policy["script-src"] == policy["style-src"] == policy["connect-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'"
