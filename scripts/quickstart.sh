#!/usr/bin/env bash
# Set everything up and run the main job on the built-in default: the tiny model `tiny-chat`, CPU, no API key.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/tuneport quickstart "$@"
