#!/usr/bin/env bash
# Builds the gateway's container image (gateway/image/Dockerfile) from a
# statically linked portcullis binary:
#
#   gateway/image/build.sh [--ca-certificates FILE] BINARY REFERENCE
#
# BINARY is a release build made with the workspace's .cargo/config.toml
# ($CARGO_TARGET_DIR/x86_64-unknown-linux-gnu/release/portcullis), which links
# it statically; a binary that asks for a program interpreter or shared
# libraries is refused, since the image has neither. It is stripped into a
# temporary build context beside the CA certificates (default: Debian's
# /etc/ssl/certs/ca-certificates.crt) and `docker build -t REFERENCE` runs
# there. FROM scratch pulls nothing; the legacy builder and BuildKit both do.
# Needs readelf and strip (binutils) and the docker CLI.
set -euo pipefail

usage() {
  echo "usage: $0 [--ca-certificates FILE] BINARY REFERENCE" >&2
  exit 2
}
fail() {
  echo "error: $*" >&2
  exit 1
}

ca_certificates=/etc/ssl/certs/ca-certificates.crt
while [ $# -gt 0 ]; do
  case "$1" in
  --ca-certificates)
    [ $# -ge 2 ] || usage
    ca_certificates="$2"
    shift 2
    ;;
  --) shift; break ;;
  -*) usage ;;
  *) break ;;
  esac
done
[ $# -eq 2 ] || usage
binary="$1"
reference="$2"
here="$(cd "$(dirname "$0")" && pwd)"

for tool in readelf strip docker; do
  command -v "$tool" >/dev/null 2>&1 || fail "$tool is not installed (readelf and strip: Debian's binutils)"
done
[ -f "$binary" ] || fail "$binary: no such file"
[ -f "$ca_certificates" ] ||
  fail "$ca_certificates: no such file (Debian's ca-certificates package has it; or pass --ca-certificates FILE)"
readelf --file-header "$binary" >/dev/null 2>&1 || fail "$binary is not an ELF executable"

# A static binary has no PT_INTERP program header and needs no library
# (static-pie keeps a dynamic section, for its own relocations only).
rebuild="build it with the workspace's .cargo/config.toml (target x86_64-unknown-linux-gnu, +crt-static)"
interpreter="$(readelf --program-headers --wide "$binary" | sed -n 's/.*\[Requesting program interpreter: \(.*\)\]/\1/p')"
[ -z "$interpreter" ] ||
  fail "$binary is dynamically linked (it asks for the program interpreter $interpreter), and the image has no loader or libc to run it: $rebuild"
libraries="$(readelf --dynamic --wide "$binary" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | paste -sd ' ' -)"
[ -z "$libraries" ] ||
  fail "$binary needs shared libraries ($libraries), and the image has none: $rebuild"

context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT
cp "$here/Dockerfile" "$context/Dockerfile"
strip --strip-all -o "$context/portcullis" "$binary"
cp -L "$ca_certificates" "$context/ca-certificates.crt"
chmod 0755 "$context/portcullis"
chmod 0644 "$context/ca-certificates.crt"
docker build --tag "$reference" "$context"
