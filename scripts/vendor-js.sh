#!/usr/bin/env bash
# Refreshes static/vendor/ from the npm registry: the chat page must work on an intranet with no
# CDN, so the browser builds it loads are committed. Bump a version here and run `make vendor`.
set -euo pipefail
cd "$(dirname "$0")/.."

MARKED=18.2.1
DOMPURIFY=3.4.18
HIGHLIGHT=11.12.0

dest=static/vendor
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Unpacks one npm package into $work/<dir> and prints its folder.
unpack() {
  local spec=$1 dir=$2
  mkdir -p "$work/$dir"
  (cd "$work" && npm pack --silent "$spec" >"$dir.name")
  tar xzf "$work/$(cat "$work/$dir.name")" -C "$work/$dir" --strip-components=1
  echo "$work/$dir"
}

m=$(unpack "marked@$MARKED" marked)
d=$(unpack "dompurify@$DOMPURIFY" dompurify)
h=$(unpack "@highlightjs/cdn-assets@$HIGHLIGHT" highlight)

rm -rf "$dest"
mkdir -p "$dest"
cp "$m/lib/marked.umd.js" "$dest/marked.umd.js"
cp "$m/LICENSE" "$dest/LICENSE.marked"
cp "$d/dist/purify.min.js" "$dest/purify.min.js"
cp "$d/LICENSE" "$dest/LICENSE.dompurify"
cp "$d/LICENSE-MPL" "$dest/LICENSE-MPL.dompurify"
cp "$h/highlight.min.js" "$dest/highlight.min.js"
cp "$h/styles/github.min.css" "$dest/highlight-github.min.css"
cp "$h/LICENSE" "$dest/LICENSE.highlight.js"

licence() { node -p "require('$1/package.json').license"; }
cat >"$dest/README.md" <<README
# Vendored browser libraries

Copied from the npm registry by \`make vendor\` (scripts/vendor-js.sh); do not edit by hand.

| Package | Version | Licence | Source file in the package | Here |
|---|---|---|---|---|
| marked | $MARKED | $(licence "$m") | lib/marked.umd.js | marked.umd.js, LICENSE.marked |
| dompurify | $DOMPURIFY | $(licence "$d") | dist/purify.min.js | purify.min.js, LICENSE.dompurify (Apache-2.0), LICENSE-MPL.dompurify |
| @highlightjs/cdn-assets | $HIGHLIGHT | $(licence "$h") | highlight.min.js, styles/github.min.css | highlight.min.js, highlight-github.min.css, LICENSE.highlight.js |
README
