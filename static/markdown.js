// Rendering Markdown that nobody vetted (model replies, pasted text) into the page: marked turns it
// into HTML, DOMPurify removes anything that could run, highlight.js colours code blocks.
const { Marked } = window.marked;

function escapeHtml(text) {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

// Raw HTML in a reply is shown as the text it is: a model explaining <div> means the tag, and
// nothing it writes becomes markup. DOMPurify below still guards what Markdown itself produces.
const markdown = new Marked({
  gfm: true,
  breaks: true,
  renderer: {
    html: ({ text, block }) => (block ? `<p>${escapeHtml(text.trim()).replace(/\n/g, "<br>")}</p>` : escapeHtml(text)),
  },
});

DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName === "A") {
    node.setAttribute("target", "_blank");
    node.setAttribute("rel", "noopener noreferrer");
  }
});

// The Clipboard API exists only in secure contexts, and a page opened over plain http on an
// intranet is not one; execCommand still copies there.
async function copyText(text) {
  if (window.isSecureContext && navigator.clipboard) return navigator.clipboard.writeText(text);
  const area = document.createElement("textarea");
  area.value = text;
  area.style.cssText = "position: fixed; opacity: 0";
  document.body.append(area);
  area.select();
  document.execCommand("copy");
  area.remove();
}

function addCopyButton(pre) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "copy";
  button.textContent = "Copy";
  button.addEventListener("click", async () => {
    try {
      await copyText(pre.querySelector("code").textContent);
      button.textContent = "Copied";
    } catch {
      button.textContent = "Copy failed";
    }
    setTimeout(() => (button.textContent = "Copy"), 1500);
  });
  pre.prepend(button);
}

export function render(target, text) {
  target.innerHTML = DOMPurify.sanitize(markdown.parse(text));
  for (const code of target.querySelectorAll("pre > code")) {
    // highlight.js throws on a language it was built without, and a model may name any.
    const language = /language-(\S+)/.exec(code.className)?.[1];
    if (language && !hljs.getLanguage(language)) code.className = "language-plaintext";
    hljs.highlightElement(code);
    addCopyButton(code.parentElement);
  }
}
