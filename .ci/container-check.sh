#!/usr/bin/env bash
# The container check: builds the Action's image from the Dockerfile as GitHub would (buildah, Docker format) and
# runs it as the runner's container-action handler does (podman), then asserts on what came out
# (.ci/container_check.py). Prints the image size and the build times the docs quote.
#
#   .ci/container-check.sh            # from the repository root, after .ci/install.sh made .venv
#
# Where no base image can be pulled it makes one: a debootstrap of the same Debian release with Python 3.11,
# imported under the base image's name. Where the container tools cannot be had it prints SKIPPED and exits 0
# (GATE_CONTAINER_CHECK=required makes that a failure). Environment:
#   GATE_CI_PYTHON              the interpreter for the assertions (default .venv/bin/python)
#   GATE_CONTAINER_CACHE        where the base image's rootfs tarball and containers.conf live
#   GATE_CONTAINER_COLD=1       build without the layer cache (to measure a cold build)
set -euo pipefail
cd "$(dirname "$0")/.."
# Images are built and run as root; GitHub's hosted runners give the runner user passwordless sudo.
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
  keep=GATE_CI_PYTHON,GATE_CI_IMAGE,GATE_CONTAINER_CACHE,GATE_CONTAINER_COLD,GATE_CONTAINER_CHECK,GATE_DEBIAN_MIRROR
  exec sudo -n --preserve-env="$keep,PIP_INDEX_URL,PIP_CERT" "$PWD/.ci/container-check.sh" "$@"
fi
root=$PWD
python="${GATE_CI_PYTHON:-$root/.venv/bin/python}"
image="${GATE_CI_IMAGE:-localhost/gate-ci:check}"
base_name=docker.io/library/python:3.11-slim-bookworm
cache="${GATE_CONTAINER_CACHE:-/var/cache/gate-container-check}"
mirror="${GATE_DEBIAN_MIRROR:-}"
start=$(date +%s)

say() { echo "container-check: $*"; }
skip() {
  echo "container-check: SKIPPED: $* (nothing about the image was checked)" >&2
  if [ "${GATE_CONTAINER_CHECK:-}" = "required" ]; then exit 1; fi
  exit 0
}

# --------------------------------------------------------------------------------------------- the tools
need=()
for tool in buildah podman runc; do command -v "$tool" >/dev/null || need+=("$tool"); done
if [ "${#need[@]}" -gt 0 ]; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    skip "${need[*]} missing and cannot be installed here (needs root and apt-get)"
  fi
  say "installing ${need[*]} with apt-get"
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
           buildah podman runc debootstrap >/dev/null; }; then
    skip "apt-get could not install buildah podman runc debootstrap"
  fi
  for tool in "${need[@]}"; do command -v "$tool" >/dev/null || skip "$tool is still missing after apt-get"; done
fi
if [ "$(id -u)" != 0 ]; then
  skip "the check builds and runs containers as root (rootless podman needs subuid ranges set up here)"
fi
[ -x "$python" ] || { echo "container-check: $python is missing: run .ci/install.sh first" >&2; exit 2; }

# Podman asks the runtime for rlimits above what a nested container may set (crun and runc both refuse them
# here), and podman and buildah lower their own RLIMIT_NPROC to 32768 first: runc, cgroupfs and limits this
# machine allows, in a containers.conf of our own (nothing system-wide is changed).
mkdir -p "$cache"
nofile=$(ulimit -Hn); nproc=$(ulimit -Hu)
[ "$nofile" = unlimited ] && nofile=1048576
[ "$nproc" = unlimited ] || [ "$nproc" -gt 32768 ] && nproc=32768
cat > "$cache/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
export CONTAINERS_CONF="$cache/containers.conf"

# --------------------------------------------------------------------------------------------- the base image
# The official python:3.11-slim-bookworm if it is here or can be pulled; else Debian bookworm (minbase) with its
# python3.11, python3-venv (what .ci/install.sh's `python3 -m venv` needs) and python links in /usr/local/bin, set up
# as Debian's official slim images are (deb822 sources with updates and security, apt that keeps no caches, no
# docs), imported under the base image's name. RECIPE names this recipe: a changed recipe re-imports.
RECIPE=debootstrap-bookworm-python3.11-3

debootstrap_tarball() {   # sets $tarball: the raw debootstrap, made once per machine (about 2 minutes)
  local rootfs
  tarball="$cache/debootstrap-bookworm-minbase-python3.11.tar"
  if [ ! -s "$tarball" ]; then
    command -v debootstrap >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      --no-install-recommends debootstrap >/dev/null || skip "no base image can be pulled and no debootstrap here"
    if [ -z "$mirror" ]; then   # the mirror apt uses here
      mirror=$(grep -h -o -E '^(URIs:|deb) +https?://[^ ]+' /etc/apt/sources.list.d/*.sources \
                 /etc/apt/sources.list 2>/dev/null | awk '{print $2}' | grep -v security | head -n1 || true)
      mirror=${mirror:-http://deb.debian.org/debian}
    fi
    rootfs=$(mktemp -d "$cache/rootfs.XXXXXX")
    say "making the base image: debootstrap --variant=minbase bookworm from $mirror (once per machine)"
    if ! debootstrap --variant=minbase --include=python3.11,python3,python3-venv,ca-certificates \
           bookworm "$rootfs" "$mirror" > "$cache/debootstrap.log" 2>&1; then
      tail -n 20 "$cache/debootstrap.log" >&2
      rm -rf "$rootfs"
      skip "debootstrap of bookworm failed (log above)"
    fi
    tar --numeric-owner -C "$rootfs" --exclude=./dev/* -cf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
    rm -rf "$rootfs"
  fi
}

write_file() {   # write_file PATH LINE...: one line per argument
  printf '%s\n' "${@:2}" > "$1"
}

make_base() {
  local rootfs clean
  debootstrap_tarball
  rootfs=$(mktemp -d "$cache/rootfs.XXXXXX")
  # Every path below is inside the fresh rootfs; refuse to go on if it is not one.
  [ -n "$rootfs" ] && [ -d "$rootfs" ] && [ "$rootfs" != / ] || { echo "container-check: no rootfs" >&2; exit 1; }
  tar --numeric-owner -C "$rootfs" -xf "$tarball"
  rm -f "$rootfs/etc/apt/sources.list"
  write_file "$rootfs/etc/apt/sources.list.d/debian.sources" \
    "Types: deb" "URIs: http://deb.debian.org/debian" "Suites: bookworm bookworm-updates" "Components: main" \
    "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg" "" \
    "Types: deb" "URIs: http://deb.debian.org/debian-security" "Suites: bookworm-security" "Components: main" \
    "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg"
  # What debuerreotype puts in Debian's official images (the slim variant): apt keeps no package caches, no docs.
  clean='"rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"'
  write_file "$rootfs/etc/apt/apt.conf.d/docker-clean" "DPkg::Post-Invoke { $clean; };" \
    "APT::Update::Post-Invoke { $clean; };" 'Dir::Cache::pkgcache "";' 'Dir::Cache::srcpkgcache "";'
  write_file "$rootfs/etc/apt/apt.conf.d/docker-no-languages" 'Acquire::Languages "none";'
  write_file "$rootfs/etc/apt/apt.conf.d/docker-gzip-indexes" 'Acquire::GzipIndexes "true";' \
    'Acquire::CompressionTypes::Order:: "gz";'
  write_file "$rootfs/etc/apt/apt.conf.d/docker-autoremove-suggests" 'Apt::AutoRemove::SuggestsImportant "false";'
  write_file "$rootfs/etc/dpkg/dpkg.cfg.d/docker" "path-exclude /usr/share/doc/*" \
    "path-include /usr/share/doc/*/copyright" "path-exclude /usr/share/groff/*" "path-exclude /usr/share/info/*" \
    "path-exclude /usr/share/linda/*" "path-exclude /usr/share/lintian/*" "path-exclude /usr/share/locale/*" \
    "path-include /usr/share/locale/locale.alias" "path-exclude /usr/share/man/*"
  for name in python3.11 python3 python; do ln -sf /usr/bin/python3.11 "$rootfs/usr/local/bin/$name"; done
  mkdir -p "$rootfs"/usr/share/{doc,man,info,locale} "$rootfs"/var/lib/apt/lists "$rootfs"/var/cache/apt/archives
  find "$rootfs/usr/share/doc" -mindepth 2 ! -name copyright ! -type d -delete
  find "$rootfs/usr/share/man" "$rootfs/usr/share/info" "$rootfs/var/lib/apt/lists" -mindepth 1 -delete
  find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 -type d -exec rm -r {} +
  find "$rootfs/var/cache/apt" "$rootfs/var/log" -maxdepth 1 -type f \( -name '*.bin' -o -name '*.log' \) -delete
  find "$rootfs/var/cache/apt/archives" -name '*.deb' -delete   # what debootstrap downloaded
  tar --numeric-owner -C "$rootfs" -cf - . | podman import --quiet \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change "LABEL org.gate.ci.base=$RECIPE" \
    --change 'CMD ["python3"]' \
    - "$base_name" >/dev/null
  rm -rf "$rootfs"
}

base_label() { podman image inspect --format '{{index .Labels "org.gate.ci.base"}}' "$base_name" 2>/dev/null; }
if podman image exists "$base_name" && [ "$(base_label)" = "" ]; then
  say "base: $base_name (the official image)"
elif podman image exists "$base_name" || ! timeout 120 podman pull --quiet "$base_name" >/dev/null 2>&1; then
  [ "$(base_label)" = "$RECIPE" ] || make_base
  say "base: $base_name is a stand-in ($RECIPE: no registry can be reached here)"
else
  say "base: pulled $base_name (the official image)"
fi

# --------------------------------------------------------------------------------------------- the build
# The Dockerfile as it is. Only where its default torch index (download.pytorch.org) cannot be reached does the
# build get this machine's pip sources instead: find-links folders and file:// indexes, mounted read-only for the
# RUN steps (nothing of them lands in a layer), through the Dockerfile's optional build args.
build_args=()
mounts=()
if ! curl -s -f -o /dev/null --max-time 15 https://download.pytorch.org/whl/cpu/torch/; then
  pipconf() { "$python" -m pip config get "$1" 2>/dev/null || true; }
  links=$(pipconf global.find-links)
  extra=$(pipconf global.extra-index-url)
  for source in $links $extra; do
    dir=${source#file://}
    [ -d "$dir" ] || continue
    # an index's folder is .../simple: mount the folder above it too, where its files may be
    [ "$(basename "$dir")" = simple ] && dir=$(dirname "$dir")
    mounts+=(-v "$dir:$dir:ro")
  done
  [ -n "$links" ] || skip "download.pytorch.org cannot be reached and pip has no find-links with a torch wheel"
  say "download.pytorch.org cannot be reached: torch from find-links $links (mounted read-only for the build)"
  build_args+=(--build-arg "TORCH_INDEX_URL=${PIP_INDEX_URL:-https://pypi.org/simple}"
               --build-arg "PIP_FIND_LINKS=$links")
  [ -z "$extra" ] || build_args+=(--build-arg "PIP_EXTRA_INDEX_URL=$extra")
fi

# The CA bundle pip uses here (a TLS-intercepting proxy needs it) goes in as the Dockerfile's `pip_ca` build secret.
cert=${PIP_CERT:-$("$python" -m pip config get global.cert 2>/dev/null || true)}
if [ -n "$cert" ] && [ -s "$cert" ]; then
  build_args+=(--secret "id=pip_ca,src=$cert")
fi

work=$(mktemp -d /tmp/gate-container-check.XXXXXX)
export GATE_CC_RUN=$$   # the containers' names start gate-cc-$$-: whatever is left of them goes at the end
cleanup() {
  podman ps -a -q --filter "name=^gate-cc-$$-" | xargs -r podman rm --force >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
# The build context: the checkout's files (the .dockerignore decides what the build sees), copied so that the
# code-only rebuild below can change one file without touching the checkout.
mkdir "$work/context"
if git -C "$root" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  git -C "$root" ls-files -z --cached --others --exclude-standard | tar --null -T - -cf - | tar -C "$work/context" -xf -
else
  tar --exclude=./.venv --exclude=./.git -cf - . | tar -C "$work/context" -xf -
fi

build() {   # build TAG LOG [extra buildah args...]
  local tag=$1 log=$2; shift 2
  local t0
  t0=$(date +%s)
  if ! buildah bud --isolation chroot --format docker --layers --force-rm --pull=never \
         "${build_args[@]}" "${mounts[@]}" "$@" -t "$tag" -f "$work/context/Dockerfile" "$work/context" \
         > "$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "container-check: FAILED: the image did not build from the Dockerfile (log above)" >&2
    exit 1
  fi
  echo $(( $(date +%s) - t0 ))
}

if [ "${GATE_CONTAINER_COLD:-0}" = 1 ]; then
  # Not --no-cache: buildah 1.28 keeps no reusable layer from such a build, so the code-only rebuild after it
  # would reinstall everything. Drop the image and the cached intermediate layers instead (the base stays).
  podman rmi --force "$image" >/dev/null 2>&1 || true
  podman image prune --force >/dev/null
fi
say "building $image from the Dockerfile (buildah bud --isolation chroot --format docker)"
first_s=$(build "$image" "$work/build.log")
cached=$(grep -c -i 'using cache' "$work/build.log" || true)
if [ "$cached" -gt 0 ]; then
  say "build: ${first_s}s ($cached steps from this machine's layer cache)"
else
  say "cold build: ${first_s}s (no layer from a cache)"
fi

# A code-only change: one line appended to a module; only the layers from `COPY gate gate` on may rebuild.
echo "# container-check: a code-only change $(date +%s%N)" >> "$work/context/gate/action/__init__.py"
warm_s=$(build localhost/gate-ci:code-change "$work/build-warm.log")
say "warm rebuild after a code-only change: ${warm_s}s"
# The step after the dependency layer's RUN line must be buildah's "--> Using cache".
if ! grep -A1 'GATE_DEPS_ONLY=1' "$work/build-warm.log" | grep -q -i 'using cache'; then
  echo "container-check: FAILED: the code-only rebuild reinstalled the dependencies (their layer was not reused)" >&2
  exit 1
fi
podman rmi --force localhost/gate-ci:code-change >/dev/null

size=$(podman image inspect --format '{{.Size}}' "$image")
say "image size: $size bytes ($(( size / 1000000 )) MB)"

# --------------------------------------------------------------------------------------------- the runs
PYTHONPATH="$root" "$python" "$root/.ci/container_check.py" --image "$image" --work "$work/runs"
say "done in $(( $(date +%s) - start ))s" \
    "(image $(( size / 1000000 )) MB, build ${first_s}s, code-only rebuild ${warm_s}s)"
