# Shared by scripts/demo, scripts/test and scripts/bench: create .venv with Python >= 3.10
# and install the project into it (editable), re-installing only when pyproject.toml changed.
ensure_venv() {
  local extra="${1:-}"
  local python=""
  for candidate in "${PYTHON:-}" python3.12 python3.11 python3.10 python3; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
      python="$candidate"
      break
    fi
  done
  if [ -z "$python" ]; then
    echo "civit needs Python 3.10 or newer on PATH (set PYTHON=/path/to/python3)" >&2
    exit 1
  fi
  if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
  fi
  local spec="."
  [ -n "$extra" ] && spec=".[${extra}]"
  local stamp=".venv/.civit-installed-${extra:-base}"
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    if ! .venv/bin/python -m pip install --quiet --disable-pip-version-check -e "$spec"; then
      echo "installing civit into .venv failed (see the pip output above)" >&2
      exit 1
    fi
    touch "$stamp"
  fi
}
