// The chat page: keeps the conversation in the page, streams each reply from the server and
// renders it as Markdown while it grows.
import { render } from "./markdown.js";
import { apiKey, currentSettings, restoreApiKey, restoreSettings } from "./settings.js";
import { completion } from "./sse.js";

const log = document.getElementById("log");
const form = document.getElementById("composer");
const input = document.getElementById("input");
const sendButton = document.getElementById("send");
const stopButton = document.getElementById("stop");

let history = [];
let controller = null;

// Follows the reply as it grows, unless the user scrolled up to read something earlier.
function keepScrolled(follow) {
  if (follow) log.scrollTop = log.scrollHeight;
}

function nearBottom() {
  return log.scrollHeight - log.scrollTop - log.clientHeight < 40;
}

function addTurn(role, text) {
  const follow = nearBottom();
  const turn = document.createElement("div");
  turn.className = `turn ${role}`;
  if (role === "error") turn.textContent = text;
  else render(turn, text);
  log.append(turn);
  keepScrolled(follow);
  return turn;
}

function setBusy(busy) {
  sendButton.disabled = busy;
  stopButton.disabled = !busy;
}

// Re-rendering the whole reply at most once a frame keeps a fast model from starving the page.
function renderer(turn) {
  let text = "";
  let pending = 0;
  const draw = () => {
    pending = 0;
    const follow = nearBottom();
    render(turn, text);
    keepScrolled(follow);
  };
  return {
    update(next) {
      text = next;
      pending ||= requestAnimationFrame(draw);
    },
    finish() {
      cancelAnimationFrame(pending);
      draw();
    },
  };
}

async function send(text) {
  // A reply that ends after New chat belongs to the conversation it was asked in, not the new one.
  const conversation = history;
  const messages = [...conversation, { role: "user", content: text }];
  const userTurn = addTurn("user", text);
  const replyTurn = addTurn("assistant streaming", "");
  const view = renderer(replyTurn);
  const own = new AbortController();
  controller = own;
  setBusy(true);
  let reply = "";
  let failed = false;
  try {
    for await (const delta of completion({ messages, ...currentSettings() }, own.signal, apiKey())) {
      reply += delta;
      view.update(reply);
    }
  } catch (error) {
    if (error.name === "AbortError") {
      replyTurn.classList.add("stopped");
    } else {
      failed = true;
      addTurn("error", error.message || String(error));
    }
  } finally {
    view.finish();
    replyTurn.classList.remove("streaming");
    // A turn the model never answered stays out of the history; after a failure its text goes
    // back into the box for another try.
    if (reply) conversation.push({ role: "user", content: text }, { role: "assistant", content: reply });
    else userTurn.classList.add("unanswered");
    if (!reply && failed && !input.value) input.value = text;
    if (controller === own) {
      controller = null;
      setBusy(false);
    }
  }
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const text = input.value.trim();
  if (!text || controller) return;
  input.value = "";
  send(text);
});

input.addEventListener("keydown", (event) => {
  // isComposing: Enter that confirms a Chinese or Japanese input-method candidate is not a send.
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    form.requestSubmit();
  }
});

// Aborting the fetch closes the connection, and the server stops generating when it notices.
stopButton.addEventListener("click", () => controller?.abort());

document.getElementById("new-chat").addEventListener("click", () => {
  controller?.abort();
  controller = null;
  setBusy(false);
  history = [];
  log.replaceChildren();
  input.focus();
});

restoreSettings();
restoreApiKey();
input.focus();
