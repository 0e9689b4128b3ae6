// The sampling settings in the page's settings panel; they are kept in localStorage so that a
// reload or a new chat does not reset what the user chose.
const FIELDS = ["temperature", "top_p", "max_tokens"];
const STORAGE_KEY = "chatglm-service.settings";

export function restoreSettings() {
  let saved = {};
  try {
    saved = JSON.parse(localStorage.getItem(STORAGE_KEY)) ?? {};
  } catch {
    // Unreadable storage (private mode, a hand-edited value) just means the defaults.
  }
  for (const field of FIELDS) {
    const input = document.getElementById(field);
    if (typeof saved[field] === "string") input.value = saved[field];
    input.addEventListener("change", () => {
      const values = Object.fromEntries(FIELDS.map((f) => [f, document.getElementById(f).value]));
      localStorage.setItem(STORAGE_KEY, JSON.stringify(values));
    });
  }
}

// The request fields; an empty field is left out so that the server's default applies. Values
// out of range are sent as they are, for the server to explain what it accepts.
export function currentSettings() {
  const body = {};
  for (const field of FIELDS) {
    const raw = document.getElementById(field).value.trim();
    if (raw !== "") body[field] = Number(raw);
  }
  return body;
}

// The API key, for a server started with --api-key; kept apart from the sampling fields because it
// is a header, not a request field.
const KEY_STORAGE = "chatglm-service.api-key";

export function restoreApiKey() {
  const input = document.getElementById("api_key");
  input.value = localStorage.getItem(KEY_STORAGE) ?? "";
  input.addEventListener("change", () => localStorage.setItem(KEY_STORAGE, input.value.trim()));
}

export function apiKey() {
  return document.getElementById("api_key").value.trim();
}
