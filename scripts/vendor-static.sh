#!/bin/sh
# Vendors the live page's renderers into gateway/static/vendor/ from the npm registry, at pinned
# versions (npm checks each tarball's integrity): the page is served by the gateway alone, with
# no CDN. Run it after changing a version below, and commit the result with the versions.
#   KaTeX      LaTeX (text/latex)              MIT
#   DOMPurify  sanitizes HTML and Markdown     Apache-2.0 or MPL-2.0
#   marked     Markdown (text/markdown)        MIT
set -e
KATEX=0.19.1
DOMPURIFY=3.5.0
MARKED=18.2.1

root=$(cd "$(dirname "$0")/.." && pwd)
vendor="$root/gateway/static/vendor"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
npm pack --silent "katex@$KATEX" "dompurify@$DOMPURIFY" "marked@$MARKED" >/dev/null
for name in katex dompurify marked; do
    mkdir "$name"
    tar xzf "$name"-*.tgz -C "$name" --strip-components=1
done

rm -rf "$vendor"
mkdir -p "$vendor/katex/fonts" "$vendor/dompurify" "$vendor/marked"
# KaTeX: the UMD build (sets window.katex), its CSS, and only the woff2 fonts (every browser
# that runs the page reads woff2; the CSS's woff/ttf fallbacks are never fetched).
cp katex/dist/katex.min.js katex/dist/katex.min.css "$vendor/katex/"
cp katex/dist/fonts/*.woff2 "$vendor/katex/fonts/"
cp katex/LICENSE "$vendor/katex/LICENSE.txt"
# ES modules for the others; source-map comments dropped (the maps are not shipped).
sed '/^\/\/# sourceMappingURL=/d' dompurify/dist/purify.es.mjs > "$vendor/dompurify/purify.es.mjs"
cp dompurify/LICENSE "$vendor/dompurify/LICENSE.txt"
sed '/^\/\/# sourceMappingURL=/d' marked/lib/marked.esm.js > "$vendor/marked/marked.esm.js"
cp marked/LICENSE.md "$vendor/marked/LICENSE.txt" 2>/dev/null || cp marked/LICENSE "$vendor/marked/LICENSE.txt"
printf 'katex %s\ndompurify %s\nmarked %s\n' "$KATEX" "$DOMPURIFY" "$MARKED" > "$vendor/VERSIONS"
echo "vendored into $vendor:"
cat "$vendor/VERSIONS"
