// The chat page: streams replies from /v1/chat/completions over a POST fetch and keeps the
// conversation in the page. Replies are shown as text (textContent), never parsed as HTML.
const log = document.getElementById("log");
const input = document.getElementById("input");
const stopButton = document.getElementById("stop");
const messages = [];
let controller = null;

function bubble(role, text) {
  const div = document.createElement("div");
  div.className = `turn ${role}`;
  div.textContent = text;
  log.appendChild(div);
  log.scrollTop = log.scrollHeight;
  return div;
}

// Yields the data of each server-sent event in the response body.
async function* events(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = block.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trimStart());
      if (data.length) yield data.join("\n");
    }
  }
}

async function send(text) {
  messages.push({ role: "user", content: text });
  bubble("user", text);
  const reply = bubble("assistant", "");
  controller = new AbortController();
  stopButton.disabled = false;
  try {
    const response = await fetch("/v1/chat/completions", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ messages, stream: true }),
      signal: controller.signal,
    });
    if (!response.ok) throw new Error((await response.json()).error.message);
    for await (const data of events(response)) {
      if (data === "[DONE]") break;
      const chunk = JSON.parse(data);
      if (chunk.error) throw new Error(chunk.error.message);
      reply.textContent += chunk.choices[0]?.delta?.content ?? "";
    }
  } catch (error) {
    if (error.name !== "AbortError") bubble("error", String(error.message || error));
  } finally {
    messages.push({ role: "assistant", content: reply.textContent });
    stopButton.disabled = true;
    controller = null;
  }
}

document.getElementById("composer").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = input.value.trim();
  if (!text || controller) return;
  input.value = "";
  send(text);
});
input.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey) {
    event.preventDefault();
    document.getElementById("composer").requestSubmit();
  }
});
stopButton.addEventListener("click", () => controller?.abort());
