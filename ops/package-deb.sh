#!/usr/bin/env bash
# Builds the Debian package with cargo-deb from the release binary ops/build-context.sh
# built (the image's binary), then inspects it: the files it installs (dpkg-deb -c), its
# control data (dpkg-deb -I), and lintian when installed.
#
#   bash ops/package-deb.sh            # prints the .deb's path on the last line
#
# cargo-deb comes from crates.io, pinned, installed once into
# ${XDG_CACHE_HOME:-$HOME/.cache}/ordinaut/cargo-deb-<version> (slow on 2 cores: minutes).
set -euo pipefail

ops_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "${ops_dir}")"
cache="${XDG_CACHE_HOME:-${HOME}/.cache}/ordinaut"
cargo_deb_version=3.8.0
cargo_deb="${cache}/cargo-deb-${cargo_deb_version}/bin/cargo-deb"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${cache}/image-target}"

fail() {
    echo "package-deb.sh: FAILED: $*" >&2
    exit 1
}

if [[ ! -x "${cargo_deb}" ]]; then
    echo "package-deb.sh: installing cargo-deb ${cargo_deb_version} into ${cache}" >&2
    cargo install --quiet --locked --version "${cargo_deb_version}" \
        --root "${cache}/cargo-deb-${cargo_deb_version}" cargo-deb
fi
[[ -x "${CARGO_TARGET_DIR}/release/ordinaut" ]] ||
    fail "no ${CARGO_TARGET_DIR}/release/ordinaut: run ops/build-context.sh first"

out="$(mktemp -d)"
trap 'rm -rf "${out}"' EXIT
# --no-build: package the binary built from the image's context, not a second build.
(cd "${root}" && "${cargo_deb}" --no-build --output "${out}" >&2)
deb="$(find "${out}" -name '*.deb' -print -quit)"
[[ -n "${deb}" ]] || fail "cargo deb produced no .deb"

echo "package-deb.sh: contents of $(basename "${deb}")" >&2
dpkg-deb -c "${deb}" | tee "${out}/contents" >&2
dpkg-deb -I "${deb}" >"${out}/info"
for path in ./usr/bin/ordinaut \
    ./lib/systemd/system/ordinaut-api.service \
    ./lib/systemd/system/ordinaut-scheduler.service \
    ./lib/systemd/system/ordinaut-worker@.service \
    ./etc/ordinaut/ordinaut.env \
    ./etc/ordinaut/ordinaut.toml \
    ./usr/share/doc/ordinaut/OPERATIONS.md; do
    grep -q " ${path}\$" "${out}/contents" || fail "the package does not install ${path}"
done
grep -Eq '^-rwxr-xr-x .* \./usr/bin/ordinaut$' "${out}/contents" ||
    fail "/usr/bin/ordinaut is not mode 0755"
# The settings hold DATABASE_URL and API_TOKENS: never world-readable.
grep -Eq '^-rw-r----- .* \./etc/ordinaut/ordinaut.env$' "${out}/contents" ||
    fail "/etc/ordinaut/ordinaut.env is not mode 0640"
dpkg-deb --ctrl-tarfile "${deb}" | tar -t >"${out}/control-files"
for f in ./postinst ./prerm ./postrm ./conffiles; do
    grep -qx "${f}" "${out}/control-files" || fail "no ${f} in the package's control files"
done
dpkg-deb -e "${deb}" "${out}/control"
grep -q "adduser --system" "${out}/control/postinst" || fail "postinst does not create the ordinaut user"
grep -qx "/etc/ordinaut/ordinaut.env" "${out}/control/conffiles" ||
    fail "ordinaut.env is not a conffile (an upgrade would overwrite the operator's settings)"
grep -q "^ Depends:.*adduser" "${out}/info" || fail "the package does not depend on adduser"

# The units as installed, against the binary as installed: unpack into a root that also
# has the system's own units, and let systemd check them (any output is a failure).
dpkg-deb -x "${deb}" "${out}/root"
mkdir -p "${out}/root/usr/lib/systemd"
cp -R /usr/lib/systemd/system "${out}/root/usr/lib/systemd/"
verify="$(systemd-analyze verify --root="${out}/root" ordinaut-api.service \
    ordinaut-scheduler.service ordinaut-worker@1.service 2>&1)" ||
    fail "systemd-analyze verify on the installed units: ${verify}"
[[ -z "${verify}" ]] || fail "systemd-analyze verify on the installed units: ${verify}"
"${out}/root/usr/bin/ordinaut" --version >&2 || fail "the packaged binary does not run"

if command -v lintian >/dev/null; then
    # Errors fail the build. bogus-mail-host is suppressed until the project has a real
    # maintainer address for Cargo.toml's [package.metadata.deb]; warnings are shown.
    echo "package-deb.sh: lintian" >&2
    lintian --fail-on error --tag-display-limit 0 --suppress-tags bogus-mail-host,bogus-mail-host-in-debian-changelog "${deb}" >&2 ||
        fail "lintian reports errors"
else
    echo "package-deb.sh: lintian not installed, skipped (apt-get install lintian)" >&2
fi
mkdir -p "${cache}/deb"
cp "${deb}" "${cache}/deb/"
echo "${cache}/deb/$(basename "${deb}")"
