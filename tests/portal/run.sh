#!/usr/bin/env bash
# The portal's browser tests: headless Chromium (Debian's) driven by playwright-core against a
# real `okey serve` and a real OpenID Connect provider (oidc-provider), with axe-core. Installs
# the npm packages of package-lock.json, builds the okey binary, and runs node's test runner.
# Screenshots, accessibility reports and the downloaded receipt go to target/portal-artifacts/.
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
(cd ../.. && cargo build --locked -p okey --quiet)
node --test --test-concurrency=1 portal.test.js
