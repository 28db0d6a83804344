#!/usr/bin/env bash
# Builds a local Docker image of Debian's redis-server (and redis-cli), since no registry can be
# reached here: the binary and every library ldd lists, imported as one layer.
# Usage: .ci/redis-image.sh [image-name]   (default floodgate-redis:local)
set -euo pipefail
image=${1:-floodgate-redis:local}
bin=$(command -v redis-server)
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/usr/bin" "$root/tmp" "$root/data" "$root/etc"
chmod 1777 "$root/tmp"
cp -L "$bin" "$root/usr/bin/redis-server"
# redis-cli too, for health checks (docker-compose's uses it).
cli=$(command -v redis-cli)
cp -L "$cli" "$root/usr/bin/redis-cli"
for lib in $( (ldd "$bin"; ldd "$cli") | grep -oE '/[^ ]+' | sort -u); do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
echo 'root:x:0:0:root:/root:/bin/sh' >"$root/etc/passwd"
echo 'root:x:0:' >"$root/etc/group"
tar -C "$root" -c . | docker import \
  --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin' \
  --change 'WORKDIR /data' \
  --change 'EXPOSE 6379' \
  --change 'CMD ["redis-server", "--protected-mode", "no"]' \
  - "$image" >/dev/null
echo "built $image from $bin ($("$bin" --version | cut -d' ' -f3))"
