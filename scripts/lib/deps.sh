# shellcheck shell=bash
# What building lockstep needs on the machine, checked and, where possible, installed.
# Sourced by scripts/demo and scripts/test; not meant to be run on its own.
#
# Installing is only attempted as root on a system with apt-get. Otherwise a missing tool is
# reported with the command that installs it, and the calling script exits 1.

# Prints a message to stderr, prefixed with the calling script's name.
deps_say() {
    printf '%s: %s\n' "${DEPS_SCRIPT:-lockstep}" "$*" >&2
}

# Whether this script may install Debian packages itself.
deps_can_apt() {
    [[ "$(id -u)" -eq 0 ]] && command -v apt-get >/dev/null 2>&1
}

# Whether the Debian package $1 is installed.
deps_debian_installed() {
    command -v dpkg-query >/dev/null 2>&1 &&
        dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

DEPS_APT_UPDATED=0

# Installs the given Debian packages, or explains how to and exits 1.
# Usage: deps_apt_install "why they are needed" PACKAGE...
deps_apt_install() {
    local why=$1
    shift
    if deps_can_apt; then
        deps_say "installing $* ($why)"
        if [[ $DEPS_APT_UPDATED -eq 0 ]]; then
            DEBIAN_FRONTEND=noninteractive apt-get update -qq
            DEPS_APT_UPDATED=1
        fi
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
        return
    fi
    deps_say "missing: $* ($why)"
    if command -v apt-get >/dev/null 2>&1; then
        deps_say "install it with:  sudo apt-get install -y $*"
    else
        deps_say "install it with your system's package manager, then run this script again"
    fi
    exit 1
}

# Installs the Debian packages of the list that are not installed yet (only the missing ones).
# Usage: deps_debian_packages "why they are needed" PACKAGE...
deps_debian_packages() {
    local why=$1 missing=() pkg
    shift
    for pkg in "$@"; do
        deps_debian_installed "$pkg" || missing+=("$pkg")
    done
    if [[ ${#missing[@]} -gt 0 ]]; then
        deps_apt_install "$why" "${missing[@]}"
    fi
}

# Checks (and installs where it can) everything `cargo build` of this workspace needs:
# the Rust toolchain, cmake (pingora's zlib-ng is built with it), a C compiler and make
# (zlib-ng, zstd and the bundled SQLite of the demo service are C).
deps_check_build() {
    if ! command -v cargo >/dev/null 2>&1; then
        deps_say "cargo is not installed (or not on PATH)."
        deps_say "install Rust with rustup (https://rustup.rs); rust-toolchain.toml names the version"
        exit 1
    fi
    if ! command -v cmake >/dev/null 2>&1; then
        deps_apt_install "cmake builds the zlib-ng library pingora uses" cmake
    fi
    if ! { command -v cc >/dev/null 2>&1 || command -v gcc >/dev/null 2>&1; } ||
        ! command -v make >/dev/null 2>&1; then
        deps_apt_install "a C compiler and make build the bundled C libraries" build-essential
    fi
}

# Checks (and installs where it can, from Debian) Node.js and npm; Node.js must be at least
# version MIN_MAJOR.
# Usage: deps_check_node MIN_MAJOR "why they are needed"
deps_check_node() {
    local min=$1 why=$2 major
    if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
        deps_apt_install "$why" nodejs npm
    fi
    major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
    if [[ ! $major =~ ^[0-9]+$ ]] || [[ $major -lt $min ]]; then
        deps_say "Node.js $min or newer is needed ($why); found $(node --version 2>/dev/null || echo none)"
        deps_say "install Node.js $min or newer, then run this script again"
        exit 1
    fi
}

# Creates (or brings up to date) a Python virtualenv holding the packages pinned in a requirements
# file, with pip from PyPI; installs Debian's python3 and python3-venv first when they are
# missing. Reinstalls only when the requirements file changed since the last install.
# Usage: deps_python_venv DIR REQUIREMENTS "why they are needed"
deps_python_venv() {
    local venv=$1 requirements=$2 why=$3
    if ! command -v python3 >/dev/null 2>&1 || ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
        deps_apt_install "$why" python3 python3-venv
    fi
    if [[ ! -x $venv/bin/pip ]]; then
        python3 -m venv "$venv"
    fi
    if ! cmp -s "$requirements" "$venv/.installed-requirements"; then
        deps_say "installing the Python packages of $requirements into $venv ($why)"
        "$venv/bin/pip" install --quiet --disable-pip-version-check --no-input -r "$requirements"
        cp "$requirements" "$venv/.installed-requirements"
    fi
}
