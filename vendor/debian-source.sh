#!/usr/bin/env bash
# Helper for vendor/Makefile: fetch a Debian source package from a newer Debian
# suite without touching the machine's global apt state.
#
#   debian-source.sh deps PKG...                 install missing build tools (apt, root)
#   debian-source.sh fetch APTDIR SUITES SRCPKG VERSION DESTDIR
#                                                download SRCPKG=VERSION from SUITES
#                                                ("trixie", "sid experimental", ...) and
#                                                unpack it (upstream code, Debian patches
#                                                not applied) into DESTDIR
#
# The archive URI is read at run time from the machine's own apt configuration
# (the repository that serves its base suite, e.g. "bookworm"), so no host name is
# written here.  Everything apt downloads or indexes lives under APTDIR: a private
# sources.list, lists dir and cache, selected through APT_CONFIG; /etc/apt and
# /var/lib/apt/lists are only read.
set -euo pipefail

FETCH_TIMEOUT=${FETCH_TIMEOUT:-300}
APT_TIMEOUT=${APT_TIMEOUT:-600}

die() { printf 'vendor: ERROR: %s\n' "$*" >&2; exit 1; }
log() { printf 'vendor: %s\n' "$*" >&2; }

cmd_deps() {
    local missing=() p
    for p in "$@"; do
        if [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" != installed ]; then
            missing+=("$p")
        fi
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    [ "$(id -u)" -eq 0 ] || die "missing build tools: ${missing[*]} (run as root, or: sudo apt-get install ${missing[*]})"
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if ! timeout "$APT_TIMEOUT" apt-get install -y -q --no-install-recommends "${missing[@]}" >&2; then
        timeout "$APT_TIMEOUT" apt-get update -q >&2 || true
        timeout "$APT_TIMEOUT" apt-get install -y -q --no-install-recommends "${missing[@]}" >&2 \
            || die "could not install ${missing[*]} with apt-get"
    fi
}

# The URI of the main Debian archive configured on this machine: the repository
# whose suite is a plain code name (not *-security / *-updates / *-backports).
# apt's own parser reads every format (sources.list, *.list, deb822 *.sources).
debian_archive_uri() {
    apt-get indextargets --no-release-info --format '$(REPO_URI) $(RELEASE)' 2>/dev/null \
        | awk '$2 !~ /[-\/]/ { print $1; exit }'
}

cmd_fetch() {
    [ $# -eq 5 ] || die "usage: $0 fetch APTDIR SUITES SRCPKG VERSION DESTDIR"
    local aptdir=$1 suites=$2 pkg=$3 version=$4 dest=$5
    local uri
    uri=$(debian_archive_uri) || true
    [ -n "$uri" ] || die "could not find a Debian archive in this machine's apt configuration (/etc/apt/sources.list*), so the $pkg $version source cannot be fetched"

    mkdir -p "$aptdir/lists/partial" "$aptdir/cache/archives/partial" "$aptdir/conf.d" "$aptdir/dl"
    aptdir=$(cd "$aptdir" && pwd)

    # Private apt configuration: the system's conf.d (proxy, validity settings, ...)
    # is kept through symlinks, then a last file redirects sources, lists and cache
    # to $aptdir and drops the system's update hooks (PackageKit, AppStream).
    local sys_parts=/etc/apt/apt.conf.d
    eval "$(apt-config shell sys_parts Dir::Etc::Parts/d 2>/dev/null)" || true
    find "$aptdir/conf.d" -mindepth 1 -delete
    if [ -d "$sys_parts" ]; then
        local f
        for f in "$sys_parts"/*; do [ -f "$f" ] && ln -s "$f" "$aptdir/conf.d/"; done
    fi
    cat >"$aptdir/conf.d/zzzz-vendor-private" <<EOF
#clear APT::Update::Pre-Invoke;
#clear APT::Update::Post-Invoke;
#clear APT::Update::Post-Invoke-Success;
Dir::Etc::SourceList "$aptdir/sources.list";
Dir::Etc::SourceParts "$aptdir/sources.list.d-empty";
Dir::State::Lists "$aptdir/lists";
Dir::Cache "$aptdir/cache";
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
APT::Sandbox::User "root";
Acquire::Retries "2";
Acquire::http::Timeout "30";
Acquire::https::Timeout "30";
Acquire::Languages "none";
EOF
    mkdir -p "$aptdir/sources.list.d-empty"
    printf 'Dir::Etc::Parts "%s/conf.d";\n' "$aptdir" >"$aptdir/apt.conf"
    : >"$aptdir/sources.list"
    local s
    for s in $suites; do
        printf 'deb-src %s %s main\n' "$uri" "$s" >>"$aptdir/sources.list"
    done
    export APT_CONFIG="$aptdir/apt.conf"

    log "indexing Debian source suites: $suites"
    if ! timeout "$FETCH_TIMEOUT" apt-get update -q >"$aptdir/update.log" 2>&1 \
        || grep -qE '^(E:|W: Failed to fetch)' "$aptdir/update.log"; then
        cat "$aptdir/update.log" >&2
        rm -rf "$aptdir/lists"
        die "could not download the Debian source index for '$suites' (apt-get update failed or exceeded ${FETCH_TIMEOUT}s); the $pkg $version source cannot be obtained"
    fi

    log "downloading $pkg $version"
    rm -rf "$aptdir/dl" && mkdir -p "$aptdir/dl"
    if ! (cd "$aptdir/dl" && timeout "$FETCH_TIMEOUT" apt-get source -q --download-only "$pkg=$version") \
            >"$aptdir/source.log" 2>&1; then
        cat "$aptdir/source.log" >&2
        local avail
        avail=$(apt-cache showsrc "$pkg" 2>/dev/null | awk '/^Version:/ { v = v sep $2; sep = ", " } END { print v }')
        rm -rf "$aptdir/lists"
        die "source package $pkg=$version is not available from Debian '$suites' (available now: ${avail:-none}); set ${VERSION_VAR:-the version variable} in vendor/Makefile (or on the make command line) to one of these"
    fi

    local dsc
    dsc=$(ls "$aptdir/dl/${pkg}_${version#*:}.dsc" 2>/dev/null) || die "apt-get source did not produce ${pkg}_${version#*:}.dsc"
    rm -rf "$dest"
    mkdir -p "$(dirname "$dest")"
    # --skip-patches: build upstream's code as released; the Debian patches only
    # rename/install the static library, which this build does not use.
    if ! dpkg-source --skip-patches -x "$dsc" "$dest" >"$aptdir/unpack.log" 2>&1; then
        cat "$aptdir/unpack.log" >&2
        die "dpkg-source could not unpack $dsc"
    fi
    # The source index is only needed for this fetch: drop it (~25 MB), and the
    # copy of the upstream tarball dpkg-source leaves next to DESTDIR.
    rm -rf "$aptdir/lists"
    rm -f "$(dirname "$dest")/${pkg}_"*.orig.tar.*
    log "unpacked $pkg $version into $dest"
}

case "${1:-}" in
    deps) shift; cmd_deps "$@" ;;
    fetch) shift; cmd_fetch "$@" ;;
    *) die "usage: $0 {deps PKG...|fetch APTDIR SUITES SRCPKG VERSION DESTDIR}" ;;
esac
