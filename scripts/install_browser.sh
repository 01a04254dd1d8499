#!/usr/bin/env bash
# What the browser test of the demo (tests/test_demo.py) needs: Debian's headless Chromium and Playwright's Python
# driver. Idempotent: whatever is already there is skipped. Never runs `playwright install` (that downloads
# Playwright's own browser builds); the test drives /usr/bin/chromium instead.
# Where Chromium cannot be installed (no apt-get, not root, no network) this says so and exits 0: the test then
# skips with that reason, it does not pass.
set -uo pipefail

if command -v chromium >/dev/null 2>&1; then
    echo "install_browser.sh: $(chromium --version 2>/dev/null | head -n 1) already installed"
elif command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    if apt-get update -q && apt-get install -y -q --no-install-recommends chromium fonts-liberation; then
        echo "install_browser.sh: installed $(chromium --version 2>/dev/null | head -n 1)"
    else
        echo "install_browser.sh: apt-get could not install chromium; the browser test will skip" >&2
    fi
else
    echo "install_browser.sh: no apt-get or not root, chromium not installed; the browser test will skip" >&2
fi

if python -c "import playwright.sync_api" >/dev/null 2>&1; then
    echo "install_browser.sh: playwright (Python) already installed"
else
    python -m pip install --quiet playwright \
        || echo "install_browser.sh: pip could not install playwright; the browser test will skip" >&2
fi
exit 0
