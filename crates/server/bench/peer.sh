#!/usr/bin/env bash
# Side-by-side load test: Consentry (release build, SQLite file on disk) and the peer
# node-oidc-provider, driven by ../shared/bench in the same run on this machine. Loopback only.
#   bash crates/server/bench/peer.sh [bench.mjs args…]     (default: --workers 16 --duration 10)
set -euo pipefail
root=$(cd "$(dirname "$0")/../../.." && pwd)
shared=${CONSENTRY_SHARED_BENCH:-$root/../shared/bench}
work=$root/target/peer-bench
args=("$@"); [ ${#args[@]} -eq 0 ] && args=(--workers 16 --duration 10)

[ -f "$shared/bench.mjs" ] || { echo "no load driver at $shared (set CONSENTRY_SHARED_BENCH)"; exit 2; }
cargo build --release -p consentry-server --bin consentry --manifest-path "$root/Cargo.toml"
rm -rf "$work/driver" && mkdir -p "$work" && cp -r "$shared" "$work/driver" && chmod -R u+w "$work/driver"
cp "$root/crates/server/bench/consentry-rs.mjs" "$work/driver/adapters/"
(cd "$work/driver" && npm ci --no-audit --no-fund --loglevel=error)

srv=$work/server; rm -rf "$srv"; mkdir -p "$srv"
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$srv/tat_key.pem" 2>/dev/null
openssl pkey -in "$srv/tat_key.pem" -pubout -out "$srv/tat_pub.pem"
secret=$(openssl rand -hex 24)
port=8787
cat > "$srv/consentry.toml" <<TOML
issuer = "http://127.0.0.1:$port"
listen = "127.0.0.1:$port"
authorization_url = "http://127.0.0.1:3000/oauth/authorize"
database_url = "sqlite://consentry.db"
[registration]
rate_limit_per_minute = 100000000
[[token_profiles]]
id = "default"
issuer = "urn:bench:issuer"
audience = "urn:bench:audience"
public_key_pem_file = "tat_pub.pem"
algorithms = ["ES256"]
[[scopes]]
name = "mcp:read"
description = "Read"
[[scopes]]
name = "mcp:write"
description = "Write"
[[resources]]
uri = "http://127.0.0.1:8000/mcp"
name = "MCP"
scopes = ["mcp:read", "mcp:write"]
default_scopes = ["mcp:read"]
introspection_secret = "$secret"
TOML
CONSENTRY_LOG=warn setsid "$root/target/release/consentry" serve --config "$srv/consentry.toml" >"$srv/server.log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
cd "$work/driver"
node bench.mjs --issuer "http://127.0.0.1:$port" --resource http://127.0.0.1:8000/mcp \
  --adapter ./adapters/consentry-rs.mjs --adapter-opt "tat_key=$srv/tat_key.pem" \
  --adapter-opt "introspection_secret=$secret" --server-pid "$pid" --label consentry \
  --json results-consentry.json "${args[@]}"
echo "consentry max RSS: $(grep VmHWM /proc/$pid/status | awk '{print $2, $3}')"
kill "$pid"; trap - EXIT
./run.sh peer "${args[@]}"
