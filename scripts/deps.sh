# Sourced by scripts/test.sh: collects what the tests need on a fresh machine and installs it.
# Each file in scripts/deps/ names what one area's tests need, through these functions.

debs=()
pips=()

# need_deb COMMAND PACKAGE: install the Debian PACKAGE unless COMMAND is on the PATH.
need_deb() {
  command -v "$1" >/dev/null 2>&1 || debs+=("$2")
}

# need_deb_file PATH PACKAGE: install the Debian PACKAGE unless PATH exists.
need_deb_file() {
  [ -e "$1" ] || debs+=("$2")
}

# need_pip MODULE PACKAGE: install the PyPI PACKAGE unless python3 can import MODULE.
need_pip() {
  python3 -c "import $1" >/dev/null 2>&1 || pips+=("$2")
}

install_needed() {
  if [ "${#debs[@]}" -gt 0 ]; then
    if [ "$(id -u)" = "0" ]; then
      echo "installing Debian packages for the tests: ${debs[*]}" >&2
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${debs[@]}" >/dev/null
    else
      echo "missing Debian packages: run 'sudo apt-get install ${debs[*]}' first" >&2
      exit 1
    fi
  fi
  if [ "${#pips[@]}" -gt 0 ]; then
    echo "installing Python packages for the tests: ${pips[*]}" >&2
    python3 -m pip install --quiet --disable-pip-version-check "${pips[@]}"
  fi
}
