#!/usr/bin/env bash
# Builds Python action modules into rekuest action components with componentize-py.
#
#   guest-sdk/python/build.sh                      every example: examples/python/<name>/actions.py
#                                                  → target/python-components/<name>.wasm
#   guest-sdk/python/build.sh path/to/my_actions.py           → target/python-components/my_actions.wasm
#   guest-sdk/python/build.sh path/to/dir                     dir/actions.py → target/python-components/dir.wasm
#   guest-sdk/python/build.sh path/to/my_actions.py -o out.wasm
#
# The module (and everything it imports: the rekuest_guest SDK, the standard library, pure-Python
# packages on the paths given with -p DIR) is imported once at build time and snapshotted into
# the component. A component newer than all its inputs is not rebuilt (REKUEST_PY_FORCE=1 forces).
# Needs componentize-py: python3 -m pip install componentize-py==0.25.1
set -euo pipefail

sdk="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$sdk/../.." && pwd)"
out_dir="${CARGO_TARGET_DIR:-$root/target}/python-components"
componentize="${COMPONENTIZE_PY:-componentize-py}"

usage() {
    sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    exit 2
}

targets=()
output=""
paths=()
while (($#)); do
    case "$1" in
        -o | --output) output="${2:?-o needs a file}"; shift 2 ;;
        -p | --python-path) paths+=("$(cd "${2:?-p needs a directory}" && pwd)"); shift 2 ;;
        -h | --help) usage ;;
        -*) echo "build.sh: unknown option $1" >&2; usage ;;
        *) targets+=("$1"); shift ;;
    esac
done
if ((${#targets[@]} == 0)); then
    for dir in "$root"/examples/python/*/; do
        [[ -f "$dir/actions.py" ]] && targets+=("${dir%/}")
    done
fi
if [[ -n "$output" && ${#targets[@]} -ne 1 ]]; then
    echo "build.sh: -o needs exactly one module" >&2
    exit 2
fi
python="${PYTHON:-python3}"
if command -v "$componentize" >/dev/null 2>&1; then
    componentize_py() { RUST_BACKTRACE=0 "$componentize" "$@"; }
elif "$python" -c 'import componentize_py' >/dev/null 2>&1; then
    # Installed, but its script is not on PATH (e.g. a user install): run it through Python.
    componentize_py() {
        RUST_BACKTRACE=0 "$python" -c 'import sys; from componentize_py import script; sys.argv[0] = "componentize-py"; sys.exit(script())' "$@"
    }
else
    echo "build.sh: componentize-py not found; install it with: python3 -m pip install componentize-py==0.25.1" >&2
    exit 1
fi

# The world Python actions are built against: `action-component` plus `wasi:http` (for
# `rekuest_guest.http`). The wasi:http WIT is the one of wasmtime-wasi-http, the host's
# implementation, from its sources that cargo fetched for the host build.
http_wit_deps() {
    local manifest
    manifest="$(cd "$root" && cargo metadata --format-version 1 2>/dev/null |
        "$python" -c 'import json, sys; print(next(p["manifest_path"] for p in json.load(sys.stdin)["packages"] if p["name"] == "wasmtime-wasi-http"))')" || {
        echo "build.sh: cannot find the wasi:http WIT (cargo metadata failed; run cargo fetch)" >&2
        return 1
    }
    echo "$(dirname "$manifest")/wit/deps"
}

python_wit() {
    local dir="$1" deps version
    deps="$(http_wit_deps)" || return 1
    version="$(sed -n 's/^package wasi:http@\([0-9.]*\);.*/\1/p' "$deps/http.wit" | head -n 1)"
    mkdir -p "$dir/deps"
    cp "$root"/wit/*.wit "$dir/"
    cp "$deps"/*.wit "$dir/deps/"
    cat >"$dir/python-http.wit" <<EOF
package arkitekt:rekuest@0.1.0;

/// action-component with wasi:http for rekuest_guest.http.
world action-component-python {
    include action-component;
    import wasi:http/outgoing-handler@$version;
}
EOF
}

build() {
    local target="$1" file name module dir out
    if [[ -d "$target" ]]; then
        file="$target/actions.py"
        name="$(basename "$(cd "$target" && pwd)")"
    else
        file="$target"
        name="$(basename "$target" .py)"
    fi
    if [[ ! -f "$file" ]]; then
        echo "build.sh: $file does not exist (give a .py file, or a directory with an actions.py)" >&2
        return 1
    fi
    dir="$(cd "$(dirname "$file")" && pwd)"
    module="$(basename "$file" .py)"
    if [[ ! "$module" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]]; then
        echo "build.sh: $file is not an importable module name" >&2
        return 1
    fi
    out="${output:-$out_dir/$name.wasm}"
    mkdir -p "$(dirname "$out")"
    if [[ -z "${REKUEST_PY_FORCE:-}" && -f "$out" ]] &&
        [[ -z "$(find "$dir" "$sdk/rekuest_guest" "$root/wit" "${paths[@]}" "${BASH_SOURCE[0]}" \
            -name '*.py' -newer "$out" -o -name '*.wit' -newer "$out" -o -name build.sh -newer "$out" |
            head -n 1)" ]]; then
        echo "$name: up to date ($out)"
        return 0
    fi
    local work
    work="$(mktemp -d)"
    # The entry module componentize-py wraps: imports the actions (registering them), checks
    # them, and exports the `actions` interface.
    cat >"$work/rekuest_component.py" <<EOF
import $module  # noqa: F401 - registers the actions
from rekuest_guest._component import Actions, check  # noqa: F401

check()
EOF
    local started=$SECONDS python_paths=(-p "$work" -p "$dir" -p "$sdk")
    for path in "${paths[@]}"; do python_paths+=(-p "$path"); done
    echo "$name: building $out from $file"
    python_wit "$work/wit" || { rm -rf "$work"; return 1; }
    if ! componentize_py -q -d "$work/wit" -w action-component-python componentize rekuest_component \
        "${python_paths[@]}" -o "$out.tmp"; then
        rm -rf "$work" "$out.tmp"
        echo "build.sh: building $file failed" >&2
        return 1
    fi
    mv "$out.tmp" "$out"
    rm -rf "$work"
    echo "$name: built $out ($(($(wc -c <"$out") / 1024 / 1024)) MiB, $((SECONDS - started)) s)"
}

for target in "${targets[@]}"; do
    build "$target"
done
