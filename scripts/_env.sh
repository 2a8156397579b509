# Sourced by the scripts: make sure .venv exists and holds this project with its test extra.
# Everything the project needs is installed from the package registries here, so a fresh
# clone on a fresh machine needs nothing but Python 3.11+.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.installed-$(cat pyproject.toml | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ]; then
  echo "Installing the project and its test tools into .venv (first run only)..." >&2
  if ! { .venv/bin/python -m pip install -q --upgrade pip &&
         .venv/bin/python -m pip install -q -e '.[test]'; } >.venv/install.log 2>&1; then
    cat .venv/install.log >&2
    echo "installation failed; the log is above and in .venv/install.log" >&2
    exit 1
  fi
  rm -f .venv/.installed-* && touch "$stamp"
fi
