# Sourced by the device scripts: the Python to use, unbuffered output, the pure-Python
# dependencies a bare GPU image may lack (wheels carried in .whl/, see README "Testing on a GPU")
# and this checkout on the path (cmcore, and the benchmarks run as modules: $PY -m benchmarks.amp).
PY=${PY:-python3}
export PYTHONUNBUFFERED=1
if ls .whl/*.whl >/dev/null 2>&1; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD
