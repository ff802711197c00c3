#!/bin/sh
# Atelier offline installer for Linux and macOS: installs the bundle this file sits in, with no network.
#
#   sh install.sh [--prefix P] [--python PY] [--expect-manifest SHA256] [--no-desktop-entry]
#   sh install.sh --verify-only [--expect-manifest SHA256]
#   sh install.sh --uninstall [--prefix P]
#
# 1. Checks the whole bundle against manifest.json before installing anything: every file's size and
#    sha256, no file missing, no file that the manifest does not list, and this machine's OS, CPU and
#    Python against the bundle's target. One mismatch: the file is named and nothing is installed.
#    With --expect-manifest, manifest.json itself must have that sha256 (the one build_bundle.py
#    printed), so that a manifest rewritten to match altered files is refused too.
# 2. Creates a fresh virtual environment in P/venv and installs every wheel with
#    `pip --no-index --find-links wheels` (no index, no pip configuration: nothing is fetched).
#    An existing P/venv is kept aside and put back if the install fails.
# 3. Registers the bundle's model pack (verified again, copied into the user's models folder),
#    adds Atelier to the desktop's menu, links P/bin/atelier and P/bin/atelier-gui, and ends with
#    `atelier doctor`.
# Default prefix: /opt/atelier as root, else ~/.local/opt/atelier.
set -eu

HERE=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
PREFIX=""
PY=""
EXPECT=""
DESKTOP=1
MODE=install

say() { printf '[atelier install] %s\n' "$*"; }
die() { printf 'install.sh: %s\n' "$*" >&2; exit 1; }

while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) [ $# -ge 2 ] || die "--prefix needs a folder"; PREFIX=$2; shift 2 ;;
        --prefix=*) PREFIX=${1#*=}; shift ;;
        --python) [ $# -ge 2 ] || die "--python needs an interpreter"; PY=$2; shift 2 ;;
        --python=*) PY=${1#*=}; shift ;;
        --expect-manifest) [ $# -ge 2 ] || die "--expect-manifest needs a sha256"; EXPECT=$2; shift 2 ;;
        --expect-manifest=*) EXPECT=${1#*=}; shift ;;
        --no-desktop-entry) DESKTOP=0; shift ;;
        --verify-only) MODE=verify; shift ;;
        --uninstall) MODE=uninstall; shift ;;
        -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) printf "install.sh: unknown option %s (see --help)\n" "$1" >&2; exit 2 ;;
    esac
done

if [ -z "$PREFIX" ]; then
    if [ "$(id -u)" = 0 ]; then PREFIX=/opt/atelier; else PREFIX="$HOME/.local/opt/atelier"; fi
fi
case "$PREFIX" in /*) ;; *) PREFIX="$(pwd)/$PREFIX" ;; esac
VENV="$PREFIX/venv"
if [ "$(id -u)" = 0 ] && [ -z "${XDG_DATA_HOME:-}" ]; then
    XDG_DATA_HOME=/usr/local/share  # a system-wide menu entry when installed as root
    export XDG_DATA_HOME
fi

if [ "$MODE" = uninstall ]; then
    [ -x "$VENV/bin/atelier" ] || die "no Atelier installed in $PREFIX"
    "$VENV/bin/atelier" desktop-install --uninstall || true
    rm -rf "$VENV" "$PREFIX/bin/atelier" "$PREFIX/bin/atelier-gui"
    rmdir "$PREFIX/bin" "$PREFIX" 2>/dev/null || true
    say "removed Atelier from $PREFIX. Your models, conversations and settings stay where 'atelier doctor' showed them."
    exit 0
fi

if [ -z "$PY" ]; then
    WANT=$(sed -n 's/^ *"python": *"\([0-9][0-9.]*\)".*/\1/p' "$HERE/manifest.json" 2>/dev/null | head -n 1)
    for c in "python$WANT" python3 python; do
        if command -v "$c" >/dev/null 2>&1; then PY=$(command -v "$c"); break; fi
    done
    [ -n "$PY" ] || die "no Python found; this bundle needs Python ${WANT:-3} (give one with --python)"
fi

# ---- 1. verify everything before installing anything ------------------------------------------
"$PY" -I - "$HERE" "$EXPECT" <<'PYEOF' || exit 1
import hashlib, json, os, platform, stat, sys

root, expect = sys.argv[1], sys.argv[2].strip().lower()
def fail(msg):
    print("install.sh: " + msg + " Nothing was installed.", file=sys.stderr)
    raise SystemExit(1)
mpath = os.path.join(root, "manifest.json")
try:
    raw = open(mpath, "rb").read(64 * 2**20)
    manifest = json.loads(raw)
except (OSError, ValueError) as exc:
    fail(f"the bundle has no readable manifest.json ({exc}).")
digest = hashlib.sha256(raw).hexdigest()
if expect and digest != expect:
    fail(f"manifest.json has sha256 {digest}, not the expected {expect}: the bundle was altered.")
if not isinstance(manifest, dict) or manifest.get("format") != "atelier-offline-bundle" \
        or not isinstance(manifest.get("files"), list) or not isinstance(manifest.get("target"), dict):
    fail("manifest.json is not an Atelier bundle manifest.")
t = manifest["target"]
here = {"os": sys.platform, "machine": platform.machine().lower(), "python": "%d.%d" % sys.version_info[:2]}
for key in ("os", "machine", "python"):
    if t.get(key) != here[key]:
        fail(f"this bundle is for {key} {t.get(key)!r}; this machine has {here[key]!r} ({sys.executable}).")
listed = {}
for f in manifest["files"]:
    p = f.get("path") if isinstance(f, dict) else None
    if not (isinstance(p, str) and p and not p.startswith("/") and "\\" not in p and "\0" not in p
            and ".." not in p.split("/") and isinstance(f.get("size"), int) and isinstance(f.get("sha256"), str)):
        fail(f"manifest.json lists an unsafe or malformed entry: {str(p)[:200]!r}.")
    listed[p] = f
for dirpath, dirnames, filenames in os.walk(root):
    for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
        rel = os.path.relpath(os.path.join(dirpath, name), root).replace(os.sep, "/")
        if rel == "manifest.json" or rel.startswith("__pycache__/"):
            continue
        if rel not in listed:
            fail(f"{rel} is in the bundle but not in its manifest (added after it was built).")
total = sum(f["size"] for f in listed.values())
done = 0
for rel, f in sorted(listed.items()):
    path = os.path.join(root, *rel.split("/"))
    try:
        st = os.lstat(path)
    except OSError:
        fail(f"{rel} is missing from the bundle.")
    if not stat.S_ISREG(st.st_mode):
        fail(f"{rel} is not a plain file.")
    if st.st_size != f["size"]:
        fail(f"{rel} has {st.st_size:,} bytes; the manifest says {f['size']:,} (altered or cut short).")
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(4 * 2**20), b""):
            h.update(block)
    if h.hexdigest() != f["sha256"].lower():
        fail(f"{rel} does not match its sha256 in the manifest (altered or damaged).")
    done += f["size"]
print(f"[atelier install] verified {len(listed)} files ({total / 1e9:.2f} GB); manifest sha256 {digest}")
print(f"[atelier install] bundle: Atelier {manifest.get('app_version')} for {t.get('os')} {t.get('machine')}, "
      f"Python {t.get('python')}, {t.get('backend')} backend")
PYEOF

if [ "$MODE" = verify ]; then exit 0; fi

# ---- 2. a fresh environment, from the bundle's wheels only ------------------------------------
mkdir -p "$PREFIX"
OLD=""
if [ -e "$VENV" ]; then OLD="$VENV.previous.$$"; mv "$VENV" "$OLD"; fi
restore() {
    rm -rf "$VENV"
    if [ -n "$OLD" ]; then mv "$OLD" "$VENV"; say "the previous install in $VENV was put back"; fi
    die "the install failed (see above)"
}
# No index and no configuration: every file comes from this bundle.
unset PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_FIND_LINKS PIP_CONSTRAINT PIP_REQUIREMENT
PIP_CONFIG_FILE=/dev/null PIP_NO_INDEX=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_NO_INPUT=1
export PIP_CONFIG_FILE PIP_NO_INDEX PIP_DISABLE_PIP_VERSION_CHECK PIP_NO_CACHE_DIR PIP_NO_INPUT
say "creating $VENV"
"$PY" -m venv "$VENV" || restore
VPY="$VENV/bin/python"
say "installing $(wc -l < "$HERE/requirements.txt" | tr -d ' ') packages from the bundle"
"$VPY" -m pip install -q --no-index --find-links "$HERE/wheels" -r "$HERE/requirements.txt" || restore
"$VPY" -m pip install -q --no-index --no-deps --find-links "$HERE/wheels" -r "$HERE/requirements-nodeps.txt" || restore
"$VPY" -m compileall -q "$VENV/lib" >/dev/null 2>&1 || true
if [ -n "$OLD" ]; then rm -rf "$OLD"; fi

# ---- 3. models, menu entry, links, doctor -------------------------------------------------------
if [ -f "$HERE/models/pack.json" ]; then
    say "registering the bundle's models"
    "$VENV/bin/atelier" models import "$HERE/models" || die "the models could not be registered (the app is installed)"
fi
mkdir -p "$PREFIX/bin"
ln -sf "$VENV/bin/atelier" "$PREFIX/bin/atelier"
ln -sf "$VENV/bin/atelier-gui" "$PREFIX/bin/atelier-gui"
if [ "$DESKTOP" = 1 ] && [ "$(uname -s)" = Linux ]; then
    "$VENV/bin/atelier" desktop-install || say "the menu entry could not be written (the app is installed)"
fi
say "installed: $PREFIX/bin/atelier-gui (the app), $PREFIX/bin/atelier (the command line)"
"$VENV/bin/atelier" doctor
