#!/usr/bin/env bash
# Register writer-app with the desktop (menu entry, icon, "Open with" for text files)
# for the current user, or under PREFIX (e.g. PREFIX=/usr for a distribution package).
# Assumes `writer-app` is on PATH (pip install, or a symlink to the frozen build).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
icons="$here/../../resources/icons"
prefix="${PREFIX:-$HOME/.local}"
app_id="io.github.writerapp.WriterApp"

install -Dm644 "$here/$app_id.desktop" "$prefix/share/applications/$app_id.desktop"
install -Dm644 "$here/$app_id.metainfo.xml" "$prefix/share/metainfo/$app_id.metainfo.xml"
install -Dm644 "$icons/writer-app.svg" "$prefix/share/icons/hicolor/scalable/apps/$app_id.svg"
for size in 16 24 32 48 64 128 256 512; do
  install -Dm644 "$icons/writer-app-$size.png" \
    "$prefix/share/icons/hicolor/${size}x${size}/apps/$app_id.png"
done

# Refresh caches where the tools exist; a desktop picks the files up anyway on next login.
command -v update-desktop-database >/dev/null && update-desktop-database -q "$prefix/share/applications" || true
command -v gtk-update-icon-cache >/dev/null && gtk-update-icon-cache -q -t "$prefix/share/icons/hicolor" || true
echo "installed $app_id under $prefix/share"
