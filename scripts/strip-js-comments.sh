#!/usr/bin/env bash
# The page's scripts as served: each whole-line `//` comment emptied (the line stays, so line
# numbers in errors match the sources). The comments are for the sources; the served files are
# ~8 KB smaller gzipped, which keeps the first load under its 6 MB goal (BENCHMARKS.md, issue 25).
# Only files with no template literal spanning lines (where a `//` line could be text) are touched.
#
# Trunk runs this after its build (Trunk.toml's post_build hook) on its staging folder; run by hand,
# `scripts/strip-js-comments.sh DIR` strips DIR's scripts.
set -euo pipefail
dir="${1:-${TRUNK_STAGING_DIR:?run by Trunk, or give the output folder}}"
for file in "$dir"/sw.js "$dir"/static/*.js "$dir"/static/app/*.js; do
  [ -f "$file" ] || continue
  # A line of code with an odd number of backticks opens or closes a multi-line template literal.
  if grep -v '^[[:space:]]*//' "$file" | awk '{ if (gsub(/`/, "`") % 2 == 1) found = 1 } END { exit !found }'; then
    echo "strip-js-comments: $file has a template literal across lines; left as it is" >&2
    continue
  fi
  sed -i -E 's|^[[:space:]]*//.*$||' "$file"
done
