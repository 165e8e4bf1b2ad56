#!/usr/bin/env bash
# Builds the gateway's container image (gateway/image/Dockerfile):
#
#   gateway/image/build.sh [--binary FILE] [--ca-certificates FILE] [REFERENCE]
#
# The image holds a statically linked portcullis binary. Without --binary,
# the release binary is linked again, statically (glibc's static-pie),
# reusing every compiled dependency: the workspace itself builds dynamic,
# since its cdylib crates cannot be built with crt-static. The binary is
# copied out at once, as the next cargo build links it dynamic again. A
# binary that asks for a program interpreter or shared libraries is refused,
# since the image has neither. It is stripped into a temporary build context
# beside the CA certificates (default: Debian's
# /etc/ssl/certs/ca-certificates.crt) and `docker build` tags the image
# REFERENCE (default: portcullis:VERSION, what `portcullis manifests`
# deploys). FROM scratch pulls nothing; the legacy builder and BuildKit both
# do. Needs readelf and strip (binutils) and the docker CLI.
set -euo pipefail

usage() {
  echo "usage: $0 [--binary FILE] [--ca-certificates FILE] [REFERENCE]" >&2
  exit 2
}
fail() {
  echo "error: $*" >&2
  exit 1
}

binary=""
ca_certificates=/etc/ssl/certs/ca-certificates.crt
while [ $# -gt 0 ]; do
  case "$1" in
  --binary | --ca-certificates)
    [ $# -ge 2 ] || usage
    if [ "$1" = --binary ]; then binary="$2"; else ca_certificates="$2"; fi
    shift 2
    ;;
  --) shift; break ;;
  -*) usage ;;
  *) break ;;
  esac
done
[ $# -le 1 ] || usage
reference="${1:-}"
here="$(cd "$(dirname "$0")" && pwd)"

for tool in readelf strip docker; do
  command -v "$tool" >/dev/null 2>&1 || fail "$tool is not installed (readelf and strip: Debian's binutils)"
done
[ -f "$ca_certificates" ] ||
  fail "$ca_certificates: no such file (Debian's ca-certificates package has it; or pass --ca-certificates FILE)"

context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT
if [ -z "$binary" ]; then
  # The path cargo reports for the executable it linked.
  built="$(cd "$here/../.." &&
    cargo rustc --release --package portcullis --bin portcullis --message-format=json-render-diagnostics \
      -- -C target-feature=+crt-static |
    sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n 1)"
  [ -n "$built" ] || fail "cargo reported no portcullis executable"
  cp "$built" "$context/unstripped"
  binary="$context/unstripped"
fi
[ -f "$binary" ] || fail "$binary: no such file"
readelf --file-header "$binary" >/dev/null 2>&1 || fail "$binary is not an ELF executable"

# A static binary has no PT_INTERP program header and needs no library
# (static-pie keeps a dynamic section, for its own relocations only).
relink="build it with this script, which links it with -C target-feature=+crt-static"
interpreter="$(readelf --program-headers --wide "$binary" | sed -n 's/.*\[Requesting program interpreter: \(.*\)\]/\1/p')"
[ -z "$interpreter" ] ||
  fail "$binary is dynamically linked (it asks for the program interpreter $interpreter), and the image has no loader or libc to run it: $relink"
libraries="$(readelf --dynamic --wide "$binary" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | paste -sd ' ' -)"
[ -z "$libraries" ] ||
  fail "$binary needs shared libraries ($libraries), and the image has none: $relink"

if [ -z "$reference" ]; then
  version="$("$binary" --version | cut -d' ' -f2)"
  reference="portcullis:$version"
fi
cp "$here/Dockerfile" "$context/Dockerfile"
strip --strip-all -o "$context/portcullis" "$binary"
rm -f "$context/unstripped"
cp -L "$ca_certificates" "$context/ca-certificates.crt"
chmod 0755 "$context/portcullis"
chmod 0644 "$context/ca-certificates.crt"
docker build --tag "$reference" "$context"
