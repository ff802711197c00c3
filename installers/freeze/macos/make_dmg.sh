#!/bin/sh
# Wrap the frozen Atelier.app (installers/freeze/build.py on macOS) in a compressed .dmg with an
# Applications link, using only the system's hdiutil:
#   sh installers/freeze/macos/make_dmg.sh dist/Atelier.app dist/atelier-0.1.0-macos-arm64-metal.dmg
# Signing and notarisation need an Apple Developer ID and are a separate step:
#   codesign --deep --force --options runtime --sign "Developer ID Application: …" dist/Atelier.app
#   xcrun notarytool submit OUT.dmg --keychain-profile … --wait && xcrun stapler staple OUT.dmg
set -eu
APP=${1:?usage: make_dmg.sh Atelier.app OUT.dmg}
OUT=${2:?usage: make_dmg.sh Atelier.app OUT.dmg}
[ -d "$APP/Contents/MacOS" ] || { echo "make_dmg.sh: $APP is not an .app bundle" >&2; exit 1; }
plutil -lint "$APP/Contents/Info.plist"
STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
cp -R "$APP" "$STAGE/Atelier.app"
ln -s /Applications "$STAGE/Applications"
rm -f "$OUT"
hdiutil create -volname Atelier -srcfolder "$STAGE" -fs HFS+ -format UDZO -imagekey zlib-level=6 "$OUT"
echo "wrote $OUT"
