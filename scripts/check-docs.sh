#!/usr/bin/env bash
# The repository's own checks on its documents, run first by scripts/test.sh:
#   - README.md stays a front page: at most README_BUDGET characters;
#   - every relative link in README.md, CHANGELOG.md and docs/*.md points at a file that exists;
#   - every repository path a document names in backticks (src/..., tests/..., scripts/..., www/...,
#     weights/..., docs/...) exists, so a moved or deleted file cannot leave a doc behind;
#   - no source module imports a module that imports it back.
set -euo pipefail
cd "$(dirname "$0")/.."
README_BUDGET=12000
problems=0
problem() { echo "check-docs: $*"; problems=$((problems + 1)); }

size=$(wc -m < README.md)
((size <= README_BUDGET)) || problem "README.md is $size characters, over its budget of $README_BUDGET: move depth to docs/"

shopt -s nullglob
docs=(README.md CHANGELOG.md docs/*.md)
for doc in "${docs[@]}"; do
  [[ -f $doc ]] || { problem "$doc is missing"; continue; }
  dir=$(dirname "$doc")
  # Markdown links and images: ](target) with no scheme, without a #fragment.
  while read -r target; do
    [[ -z $target || $target =~ ^[a-z]+: || $target == \#* ]] && continue
    path=${target%%#*}
    [[ -e "$dir/$path" ]] || problem "$doc links to $target, which does not exist"
  done < <(grep -oE '\]\([^)[:space:]]+\)' "$doc" | sed -E 's/^\]\((.*)\)$/\1/')
  # Paths named in backticks.
  while read -r path; do
    path=${path%%:*}                       # src/x.rs:12 -> src/x.rs
    [[ $path == *'*'* || $path == *'…'* || $path == *'<'* ]] && continue
    git check-ignore -q "$path" && continue  # made by a build or a test run
    [[ -e $path ]] || problem "$doc names \`$path\`, which does not exist"
  done < <(grep -oE '`(src|tests|scripts|www|weights|docs|\.ci)/[^` ]*`' "$doc" | tr -d '`' | sort -u)
done

# Import cycles between two modules of the crate: `use crate::a::b` in a file, and back.
python3 - <<'EOF' || problems=$((problems + 1))
import pathlib, re, sys
root = pathlib.Path("src")
def module(path):
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] in ("mod", "lib"): parts = parts[:-1]
    return "::".join(parts)
mods = {module(p): p for p in root.rglob("*.rs") if "bin" not in p.parts}
uses = {}
for name, path in mods.items():
    # Imports, not mentions: comments are dropped first.
    text = "\n".join(line.split("//")[0] for line in path.read_text().splitlines())
    found = set()
    for m in re.finditer(r"crate::([a-z_]+(?:::[a-z_]+)*)", text):
        target = m.group(1)
        while target and target not in mods: target = target.rpartition("::")[0]
        if target and target != name and not name.startswith(target + "::") and not target.startswith(name + "::"):
            found.add(target)
    uses[name] = found
cycles = sorted({tuple(sorted((a, b))) for a in uses for b in uses[a] if a in uses.get(b, ())})
for a, b in cycles: print(f"check-docs: src modules {a} and {b} import each other")
sys.exit(1 if cycles else 0)
EOF

if ((problems)); then echo "check-docs: $problems problem(s)"; exit 1; fi
echo "check-docs: README.md $size of $README_BUDGET characters; links, named paths and module imports ok"
