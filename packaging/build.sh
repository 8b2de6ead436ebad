#!/usr/bin/env bash
# Build the one-folder desktop app with PyInstaller (packaging/writer-app.spec).
#   packaging/build.sh                      -> dist/writer-app/writer-app
#   DIST_DIR=/tmp/d WORK_DIR=/tmp/w packaging/build.sh
# Uses $PYTHON (default python3) with writer-app's dependencies installed.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-python3}"
dist_dir="${DIST_DIR:-$root/dist}"
work_dir="${WORK_DIR:-$root/build/pyinstaller}"

if ! "$python" -m PyInstaller --version >/dev/null 2>&1; then
  echo "installing PyInstaller..."
  "$python" -m pip install --quiet "pyinstaller>=6.0"
fi

"$python" -m PyInstaller --noconfirm --clean --log-level "${PYINSTALLER_LOG_LEVEL:-WARN}" \
  --distpath "$dist_dir" --workpath "$work_dir" "$root/packaging/writer-app.spec"

app="$dist_dir/writer-app/writer-app"
[ -e "$app.exe" ] && app="$app.exe"
echo "built: $app"
echo "size:  $(du -sh "$dist_dir/writer-app" | cut -f1)"
echo "check: $app --self-test"
