#!/usr/bin/env bash
# code-server (VS Code in the browser) for tests/test_apps_code_server.py, in .cache/code-server,
# with the Node major it requires (24 for code-server 4.139) from npm's `node` package when the
# system's node is another major. Needs npm, a C/C++ toolchain, python3 and libkrb5-dev (code-server
# builds native modules: kerberos, sqlite3, spdlog, ...). Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

version=${CODE_SERVER_VERSION:-4.139.1}
node_major=${CODE_SERVER_NODE_MAJOR:-24}
dest=${CODE_SERVER_DIR:-.cache/code-server}
entry=$dest/app/node_modules/code-server/out/node/entry.js
node=$dest/node/node_modules/.bin/node

installed() {  # the version in code-server's package.json (--version would write ~/.config)
  "$node" -p "require('$PWD/$dest/app/node_modules/code-server/package.json').version" 2>/dev/null
}
if [ -x "$node" ] && [ "$(installed)" = "$version" ]; then
  exit 0
fi

# Debian packages the native modules need, only when missing (root only)
missing=()
for pkg in build-essential python3 pkg-config libkrb5-dev; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "setup: missing ${missing[*]}; install them for code-server's native modules" >&2
    exit 1
  fi
fi

# Node $node_major: npm's `node` package (a node binary and its headers, from the npm registry)
if ! [ -x "$node" ] || [ "$("$node" -p 'process.versions.node.split(".")[0]')" != "$node_major" ]; then
  npm install --silent --no-audit --no-fund --prefix "$dest/node" "node@$node_major" >/dev/null
fi
headers=$(cd "$dest/node/node_modules/node/node_modules/node-linux-"* && pwd)  # include/node/*.h

# code-server, with npm running on that node: its postinstall checks the major of the node that
# runs npm, and node-gyp must build against that node's headers (not a user's npmrc nodedir)
PATH="$PWD/$dest/node/node_modules/.bin:$PATH" npm_config_nodedir="$headers" \
  npm install --no-audit --no-fund --prefix "$dest/app" "code-server@$version" >/dev/null
[ "$(installed)" = "$version" ] && [ -f "$entry" ]
