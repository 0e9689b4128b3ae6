// Reading the OpenAI-style server-sent events of /v1/chat/completions from a fetch response body:
// the page must POST, which the browser's EventSource cannot.

// Yields the data of each event; TextDecoderStream keeps a UTF-8 character that is split across
// network chunks (Chinese, emoji) whole.
async function* events(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = block.split("\n").filter((line) => line.startsWith("data:"));
      if (data.length) yield data.map((line) => line.slice(5).replace(/^ /, "")).join("\n");
    }
  }
}

// The server's message from an error response, which may not be JSON when a proxy answers.
async function errorMessage(response) {
  const text = await response.text();
  try {
    return JSON.parse(text).error.message;
  } catch {
    return `${response.status} ${response.statusText}: ${text.slice(0, 200)}`;
  }
}

// A failed network step surfaces as a bare TypeError ("Failed to fetch"); this says which step it
// was. An abort passes unchanged, for the page to tell a stop from a failure.
function explained(what) {
  return (error) => {
    throw error.name === "AbortError" ? error : new Error(`${what}: ${error.message}`);
  };
}

// Streams a chat completion and yields the text of each delta. Throws the server's message both
// for an error status and for an error event sent after the 200, once generation had started.
export async function* completion(body, signal, apiKey = "") {
  const headers = { "Content-Type": "application/json" };
  if (apiKey) headers.Authorization = `Bearer ${apiKey}`;
  const response = await fetch("/v1/chat/completions", {
    method: "POST",
    headers,
    body: JSON.stringify({ ...body, stream: true }),
    signal,
  }).catch(explained("could not reach the server"));
  if (!response.ok) throw new Error(await errorMessage(response));
  const stream = events(response);
  for (;;) {
    const { value, done } = await stream.next().catch(explained("the connection to the server was lost"));
    if (done) throw new Error("the reply ended before it was complete");
    if (value === "[DONE]") return;
    const chunk = JSON.parse(value);
    if (chunk.error) throw new Error(chunk.error.message);
    const text = chunk.choices?.[0]?.delta?.content;
    if (text) yield text;
  }
}
