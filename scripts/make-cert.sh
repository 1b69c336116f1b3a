#!/usr/bin/env bash
# Makes a self-signed TLS certificate for a supervisor reachable as HOST (a name or an IP address),
# so browsers on other machines of the LAN get a secure context (WebCrypto and WebRTC need one).
# Usage: scripts/make-cert.sh HOST [OUT_DIR]   ->  OUT_DIR/cert.pem and OUT_DIR/key.pem
# It is a leaf certificate (CA:FALSE, serverAuth), which rustls-based peers accept with
# --supervisor-ca OUT_DIR/cert.pem; browsers show a warning once, which you accept for that host.
set -euo pipefail
host=${1:?usage: scripts/make-cert.sh HOST [OUT_DIR]}
out=${2:-.}
mkdir -p "$out"
if [[ $host =~ ^[0-9.]+$ || $host == *:* ]]; then san="IP:$host"; else san="DNS:$host"; fi
openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj "/CN=$host" \
  -keyout "$out/key.pem" -out "$out/cert.pem" \
  -addext "subjectAltName=$san,DNS:localhost,IP:127.0.0.1" \
  -addext "basicConstraints=critical,CA:FALSE" \
  -addext "extendedKeyUsage=serverAuth" 2>/dev/null
echo "wrote $out/cert.pem and $out/key.pem for $host"
