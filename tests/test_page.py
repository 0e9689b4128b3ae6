"""The chat page is served with its assets, and nothing on it comes from another host."""

import re

import requests

from tests.http_helpers import TIMEOUT


def test_page_and_its_assets_are_served_locally(tiny_server):
    page = requests.get(tiny_server.url("/"), timeout=TIMEOUT)
    assert page.status_code == 200
    assert "tiny" in page.text
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert assets and all(a.startswith("/static/") for a in assets)
    for asset in assets:
        assert requests.get(tiny_server.url(asset), timeout=TIMEOUT).status_code == 200
