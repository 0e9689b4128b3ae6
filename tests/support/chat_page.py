"""Driving the chat page in Debian's headless Chromium with Playwright, against a real server."""

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from playwright.sync_api import Browser, Page, Route, expect, sync_playwright

from tests.support.http_helpers import health

CHROMIUM = "/usr/bin/chromium"
# Playwright's own browser download is not reachable from CI; these flags make Debian's chromium
# run headless as root without reaching out to Google's services.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# Every wait is bounded, generously: the machine running the tests may be slow and shared.
WAIT_MS = 30_000
expect.set_options(timeout=WAIT_MS)
# Runs before the page's own scripts (Playwright injects it past the page's CSP) and records what
# the Content-Security-Policy refused, as "directive blocked-uri". Playwright polls a
# `wait_for_function` given as an expression through eval, which the policy refuses: give it a
# function.
RECORD_CSP_VIOLATIONS = """
    window.cspViolations = [];
    document.addEventListener("securitypolicyviolation", (e) =>
        window.cspViolations.push(`${e.effectiveDirective} ${e.blockedURI}`));
"""


@contextmanager
def chromium() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=WAIT_MS * 2)
        try:
            yield browser
        finally:
            browser.close()


def wait_until(condition: Callable[[], bool], timeout: float = WAIT_MS / 1000, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not met within {timeout}s")
        time.sleep(0.05)


class ChatPage:
    """The page open on the server, with the chat requests it sends recorded.

    `extra` is merged into each chat request on its way out: with the random-weight tiny model a
    long reply needs `ignore_eos`, a field a user never sets. The reply itself comes from the server.
    """

    def __init__(self, page: Page, server) -> None:
        self.page = page
        self.server = server
        self.sent: list[dict] = []
        self.extra: dict = {}
        page.route("**/v1/chat/completions", self._forward)
        page.add_init_script(RECORD_CSP_VIOLATIONS)
        page.goto(server.url("/"))

    def _forward(self, route: Route) -> None:
        body = route.request.post_data_json
        self.sent.append(body)
        route.continue_(post_data=json.dumps({**body, **self.extra}))

    @property
    def input(self):
        return self.page.locator("#input")

    @property
    def turns(self):
        return self.page.locator("#log .turn")

    def button(self, element_id: str):
        return self.page.locator(f"#{element_id}")

    def last(self, role: str):
        return self.page.locator(f"#log .turn.{role}").last

    def send(self, text: str) -> None:
        self.input.fill(text)
        self.input.press("Enter")

    def wait_done(self) -> None:
        expect(self.page.locator("#log .turn.streaming")).to_have_count(0)
        expect(self.button("send")).to_be_enabled()
        expect(self.button("stop")).to_be_disabled()

    def set_field(self, field: str, value: str) -> None:
        self.page.locator("#settings summary").click()
        self.page.locator(f"#{field}").fill(value)
        self.page.locator("#settings summary").click()

    def csp_violations(self) -> list[str]:
        return self.page.evaluate("window.cspViolations")

    def engine(self) -> dict:
        return health(self.server)["engine"]
