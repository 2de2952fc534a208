#!/bin/sh
# The wheel as a user installs it: built from this tree, installed (not editable) into a clean virtual
# environment outside the tree, with the locked dependency versions. Then `keytrail --version`, the
# demo, and `pytest --fixtures` (the plugin's fixtures, loaded through the entry point).
# Needs UV (the uv executable) and PYTHON (the interpreter for the clean environment); `make smoke` sets both.
set -eu
UV="$(realpath "${UV:-uv}")"
PYTHON="${PYTHON:-python3}"
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/keytrail-smoke.XXXXXX")"
trap 'rm -rf "$work"' EXIT
# Nothing from the checkout may leak in: the tree's modules, or a test environment's settings.
unset PYTHONPATH VIRTUAL_ENV KEYTRAIL_DATABASE_URL KEYTRAIL_SECRET_KEY KEYTRAIL_SECRET_KEY_FILE || true
export XDG_DATA_HOME="$work/xdg"

cd "$root"
"$UV" build --quiet --wheel --out-dir "$work/dist" .
wheel="$(ls "$work"/dist/keytrail-*.whl)"
version="$("$PYTHON" -c 'import re,sys; print(re.search(r"__version__ = \"(.+?)\"", open(sys.argv[1]).read()).group(1))' keytrail/__init__.py)"
"$UV" export --quiet --locked --format requirements-txt --no-emit-project --no-hashes --extra postgres \
    --no-default-groups --output-file "$work/constraints.txt"
# The wheel holds the license, the type marker and the JSON Schemas of --json.
"$PYTHON" - "$wheel" <<'PY'
import sys, zipfile
names = set(zipfile.ZipFile(sys.argv[1]).namelist())
needed = {"keytrail/py.typed", "keytrail/__main__.py"}
missing = sorted(needed - names)
assert not missing, f"the wheel lacks {missing}"
assert any(n.endswith("licenses/LICENSE") for n in names), "the wheel lacks LICENSE"
assert any(n.startswith("keytrail/schemas/") and n.endswith(".json") for n in names), "the wheel lacks the schemas"
PY

"$UV" venv --quiet --python "$PYTHON" "$work/venv"
VIRTUAL_ENV="$work/venv" "$UV" pip install --quiet -c "$work/constraints.txt" "$wheel[postgres]" "pytest>=8.2"

cd "$work"
bin="$work/venv/bin"
test "$("$bin/python" -c 'import keytrail, os; print(os.path.dirname(keytrail.__file__))')" = \
    "$("$bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/keytrail"
shown="$("$bin/keytrail" --version)"
test "$shown" = "keytrail $version" || { echo "smoke: keytrail --version said '$shown', not 'keytrail $version'" >&2; exit 1; }
"$bin/python" -m keytrail --version >/dev/null
"$bin/keytrail" --db "sqlite:///$work/demo.db" demo >"$work/demo.txt"
grep -q "verify: ok" "$work/demo.txt" || { cat "$work/demo.txt" >&2; echo "smoke: the demo did not verify" >&2; exit 1; }
# The auditor's report, from the templates the wheel ships (keytrail/reporting/templates).
grep -q "Verification passed" "$work/demo.report.html" || { echo "smoke: the demo wrote no auditor's report" >&2; exit 1; }
"$bin/pytest" --fixtures -p no:cacheprovider >"$work/fixtures.txt" 2>&1 || true
grep -q "keytrail_engine" "$work/fixtures.txt" || { cat "$work/fixtures.txt" >&2; echo "smoke: pytest --fixtures shows no keytrail fixture" >&2; exit 1; }
echo "smoke: the wheel $(basename "$wheel") installs; --version, the demo, its report and the pytest plugin work."
