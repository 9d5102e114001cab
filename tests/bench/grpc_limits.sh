#!/usr/bin/env bash
# The coordinator under a connection flood (security review M1): a real coordinator and agent,
# 1,000 TCP connections that never present a certificate, and 500 job watches from one valid
# operator certificate. Prints how many the handshake and watch caps refused, whether an
# operator and the agent kept working, and the coordinator's RSS before / under load / peak /
# after. Needs root (the sandbox runs PostgreSQL as the postgres user). Asserts nothing.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build -q --workspace --bins
cargo run -q -p lifeboat-e2e --example grpc_load
