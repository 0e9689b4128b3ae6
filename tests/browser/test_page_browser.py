"""The chat page in headless Chromium against the real server on the tiny model: a reply streams in,
Stop stops generation on the server, New chat forgets, errors show, and no reply can run script."""

import json
import re

import pytest
from playwright.sync_api import Route, expect

from tests.conftest import OUTPUT, own_tiny_server
from tests.support.chat_page import ChatPage, chromium, wait_until

# Slow: headless Chromium against a server of its own.
pytestmark = pytest.mark.slow

# A script that ran would leave a mark here; the page itself never sets it.
XSS = "<img src=x onerror=\"window.__xss = 'img'\">"


@pytest.fixture(scope="module")
def browser():
    with chromium() as browser:
        yield browser


def open_chat(browser, server):
    """A fresh browser context on `server`; a script error, a request to any other host, or
    anything the Content-Security-Policy refused, fails the test."""
    context = browser.new_context()
    page = context.new_page()
    errors, foreign = [], []
    page.on("pageerror", lambda error: errors.append(error))
    page.on("request", lambda r: r.url.startswith(server.base_url) or foreign.append(r.url))
    chat = ChatPage(page, server)
    yield chat
    violations = chat.csp_violations()
    context.close()
    assert not violations, violations
    assert not errors, errors
    assert not foreign, foreign


@pytest.fixture
def chat(browser, tiny_server):
    yield from open_chat(browser, tiny_server)


@pytest.fixture
def demo_chat(browser, demo_server):
    yield from open_chat(browser, demo_server)


def test_with_its_default_settings_the_page_answers_a_simple_question_on_demo(demo_chat):
    """The page sends no temperature or top_p of its own, so the model's recommended sampling
    applies (SmolLM2's, on demo), and the newcomer's first question gets a sensible answer."""
    demo_chat.send("What is the capital of France? Answer in one word.")
    demo_chat.wait_done()
    assert not {"temperature", "top_p"} & set(demo_chat.sent[0])
    assert "Paris" in demo_chat.last("assistant").text_content()


def record_reply_lengths(chat: ChatPage) -> None:
    chat.page.evaluate(
        """() => {
            window.replyLengths = [];
            new MutationObserver(() => {
                const reply = document.querySelector("#log .turn.assistant");
                if (reply) window.replyLengths.push(reply.textContent.length);
            }).observe(document.getElementById("log"), { subtree: true, childList: true, characterData: true });
        }"""
    )


def test_a_reply_streams_in_and_the_next_message_carries_the_history(chat):
    chat.extra = {"ignore_eos": True, "max_tokens": 800}
    chat.set_field("temperature", "0.5")
    chat.set_field("top_p", "0.9")
    record_reply_lengths(chat)
    chat.input.fill("你好，世界 😀")
    chat.input.press("Shift+Enter")
    chat.input.press_sequentially("second line")
    chat.input.press("Enter")

    expect(chat.last("user")).to_have_text("你好，世界 😀\nsecond line", use_inner_text=True)
    expect(chat.input).to_have_value("")
    chat.wait_done()
    lengths = chat.page.evaluate("window.replyLengths")
    final = len(chat.last("assistant").text_content())
    assert final > 0
    partial = {n for n in lengths if 0 < n < final}
    assert len(partial) >= 2, f"the reply appeared at once, not streamed: {lengths}"

    first = chat.sent[0]
    assert first["stream"] is True
    assert first["messages"] == [{"role": "user", "content": "你好，世界 😀\nsecond line"}]
    assert (first["temperature"], first["top_p"]) == (0.5, 0.9)
    assert "max_tokens" not in first

    chat.extra = {}
    chat.send("and again")
    chat.wait_done()
    roles = [m["role"] for m in chat.sent[1]["messages"]]
    assert roles == ["user", "assistant", "user"]
    assert chat.sent[1]["messages"][1]["content"]
    expect(chat.turns).to_have_count(4)
    chat.page.screenshot(path=OUTPUT / "page.png", full_page=True)


def test_stop_aborts_the_request_and_generation_stops_on_the_server(chat):
    budget = 4000
    chat.extra = {"ignore_eos": True, "max_tokens": budget}
    wait_until(lambda: chat.engine()["active"] == 0, what="an idle engine")
    before = chat.engine()["tokens_generated"]
    chat.send("a long story, please")
    expect(chat.button("stop")).to_be_enabled()
    chat.page.wait_for_function("() => document.querySelector('#log .turn.assistant').textContent.length > 20")
    assert chat.engine()["active"] == 1

    chat.button("stop").click()
    chat.wait_done()
    expect(chat.last("assistant")).to_have_class("turn assistant stopped")
    wait_until(lambda: chat.engine()["active"] == 0, timeout=15, what="generation stopped on the server")
    generated = chat.engine()["tokens_generated"] - before
    assert 0 < generated < budget
    chat.page.wait_for_timeout(500)
    assert chat.engine()["tokens_generated"] - before == generated

    # What was shown of the stopped reply stays in the conversation.
    chat.extra = {}
    chat.send("go on")
    chat.wait_done()
    assert [m["role"] for m in chat.sent[1]["messages"]] == ["user", "assistant", "user"]


def test_new_chat_forgets_the_history_and_stops_a_running_reply(chat):
    # Short replies, so that the history and the long reply both fit the tiny model's context.
    chat.extra = {"max_tokens": 16}
    chat.send("first conversation")
    chat.wait_done()
    chat.extra = {"ignore_eos": True, "max_tokens": 3000}
    chat.send("a reply cut short by New chat")
    chat.page.wait_for_function("() => document.querySelector('#log .turn.streaming')?.textContent.length > 0")

    chat.button("new-chat").click()
    expect(chat.turns).to_have_count(0)
    expect(chat.button("send")).to_be_enabled()
    wait_until(lambda: chat.engine()["active"] == 0, timeout=15, what="generation stopped on the server")

    chat.extra = {}
    chat.send("second conversation")
    chat.wait_done()
    assert chat.sent[-1]["messages"] == [{"role": "user", "content": "second conversation"}]
    expect(chat.turns).to_have_count(2)


def test_an_error_from_the_server_is_shown_and_the_message_kept_for_another_try(chat):
    chat.set_field("max_tokens", "100000")
    chat.send("too long a reply")
    expect(chat.last("error")).to_contain_text("exceeds this model's context")
    chat.wait_done()
    expect(chat.input).to_have_value("too long a reply")

    chat.set_field("max_tokens", "8")
    chat.input.press("Enter")
    chat.wait_done()
    assert chat.sent[-1]["messages"] == [{"role": "user", "content": "too long a reply"}]
    assert chat.sent[-1]["max_tokens"] == 8


def test_html_typed_by_the_user_is_shown_as_text_and_never_runs(chat):
    chat.send(XSS)
    expect(chat.last("user")).to_have_text(XSS)
    chat.wait_done()
    assert chat.page.locator("#log img").count() == 0
    assert chat.page.evaluate("window.__xss") is None
    assert chat.sent[0]["messages"][0]["content"] == XSS


def test_script_that_is_not_one_of_the_page_files_is_refused(browser, tiny_server):
    context = browser.new_context()
    try:
        chat = ChatPage(context.new_page(), tiny_server)
        # A string timer is eval'd in the page itself; Playwright's own evaluate is exempt from CSP.
        chat.page.evaluate(
            """() => {
                const script = document.createElement("script");
                script.textContent = "window.__xss = 'inline'";
                document.body.append(script);
                setTimeout("window.__xss = 'eval'", 0);
            }"""
        )
        wait_until(lambda: len(chat.csp_violations()) == 2, what="both refusals reported")
        assert sorted(chat.csp_violations()) == ["script-src eval", "script-src-elem inline"]
        assert chat.page.evaluate("window.__xss") is None
    finally:
        context.close()


def canned_reply(text: str) -> str:
    """An SSE stream like the server's, one character a chunk, so tags arrive split."""
    chunks = [{"choices": [{"index": 0, "delta": {"content": c}, "finish_reason": None}]} for c in text]
    return "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"


def test_html_in_a_model_reply_is_shown_as_text_and_never_runs(chat):
    # The one canned reply in these tests: a random-weight model cannot be made to write HTML.
    reply = (
        f"Here: {XSS}\n\n<script>window.__xss = 'script'</script>\n\n"
        "[a link](javascript:window.__xss='link') and **bold**\n\n```python\nprint('hi')\n```\n"
    )

    def fulfil(route: Route) -> None:
        route.fulfill(status=200, content_type="text/event-stream", body=canned_reply(reply))

    chat.page.unroute("**/v1/chat/completions")
    chat.page.route("**/v1/chat/completions", fulfil)
    chat.send("say something dangerous")
    chat.wait_done()

    answer = chat.last("assistant")
    expect(answer).to_contain_text(XSS)
    expect(answer).to_contain_text("<script>window.__xss = 'script'</script>")
    expect(answer.locator("strong")).to_have_text("bold")
    expect(answer.locator("code.hljs .hljs-built_in")).to_have_text("print")
    assert chat.page.locator("#log img, #log script, #log [onerror]").count() == 0
    assert not (answer.locator("a").get_attribute("href") or "").startswith("javascript:")
    chat.page.locator("a", has_text="a link").click()
    assert chat.page.evaluate("window.__xss") is None


def test_code_blocks_are_highlighted_and_have_a_copy_button(chat):
    chat.page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=chat.server.base_url)
    chat.send("```python\ndef f():\n    return '代码'\n```")
    chat.wait_done()
    code = chat.last("user").locator("pre code.hljs")
    expect(code.locator(".hljs-keyword").first).to_have_text("def")
    chat.last("user").locator("button.copy").click()
    expect(chat.last("user").locator("button.copy")).to_have_text("Copied")
    assert chat.page.evaluate("navigator.clipboard.readText()") == "def f():\n    return '代码'\n"


def test_the_page_fits_a_phone_screen(chat):
    chat.page.set_viewport_size({"width": 375, "height": 740})
    chat.send("a message on a phone, long enough to wrap: " + "很长的句子" * 20)
    chat.wait_done()
    for element in ("#input", "#send", "#stop", "#new-chat", "#settings summary"):
        expect(chat.page.locator(element)).to_be_in_viewport()
    assert chat.page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    chat.page.screenshot(path=OUTPUT / "page-phone.png")


@pytest.fixture(scope="module")
def keyed_server():
    yield from own_tiny_server("tiny-keyed-page", "--api-key", "s3cret")


def test_a_server_with_keys_answers_the_page_once_it_is_given_a_key(browser, keyed_server):
    context = browser.new_context()
    try:
        chat = ChatPage(context.new_page(), keyed_server)
        chat.set_field("max_tokens", "8")
        # Greedy: the tiny model sampled at the API's default temperature can end at its first token.
        chat.set_field("temperature", "0")
        chat.send("hello")
        expect(chat.last("error")).to_be_visible()
        chat.wait_done()

        chat.set_field("api_key", "s3cret")
        chat.input.press("Enter")
        chat.wait_done()
        expect(chat.last("assistant")).not_to_be_empty()
        statuses = re.findall(r"POST /v1/chat/completions (\d{3}) ", keyed_server.log())
        assert statuses == ["401", "200"]
    finally:
        context.close()
