#!/usr/bin/env bash
# `make bench`: install what the benchmark needs (wrk, thumbor 7 in its own virtualenv),
# run it, then time the core code paths with pytest-benchmark. See BENCHMARKS.md.
#
#   bench/bench.sh [photo folder]        (VENV: the project virtualenv, default .venv)
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PHOTOS=${1:-${PHOTOS:-}}
THUMBOR_VENV=bench/.venv-thumbor
THUMBOR_SPEC='thumbor>=7,<8'

# wrk drives the HTTP load; the cluster section starts Redis and HAProxy.
for tool in redis-server haproxy; do
    if ! command -v "$tool" >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server haproxy >/dev/null
    fi
done
if ! command -v wrk >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "installing wrk"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wrk >/dev/null
    else
        echo "the benchmark needs wrk. Install it, then run make bench again:"
        echo "    sudo apt-get install wrk"
        exit 1
    fi
fi

# thumbor 7, the comparison, in a virtualenv of its own (its Pillow and tornado pins are
# not shield's). If it cannot be installed the benchmark still runs and says so.
if ! "$THUMBOR_VENV/bin/thumbor" --version >/dev/null 2>&1; then
    echo "installing $THUMBOR_SPEC into $THUMBOR_VENV (log: bench/thumbor-install.log)"
    rm -rf "$THUMBOR_VENV"
    if ! { python3 -m venv "$THUMBOR_VENV" &&
        "$THUMBOR_VENV/bin/pip" install --quiet --disable-pip-version-check "$THUMBOR_SPEC"; } \
        >bench/thumbor-install.log 2>&1; then
        echo "thumbor could not be installed; the benchmark runs without it (see bench/thumbor-install.log)"
        rm -rf "$THUMBOR_VENV"
    fi
fi

args=()
if [ -n "$PHOTOS" ]; then
    args+=(--photos "$PHOTOS")
fi
"$VENV/bin/python" -m bench.run "${args[@]}"

echo
"$VENV/bin/python" -m bench.optimize ${PHOTOS:+--photos "$PHOTOS"}

echo
"$VENV/bin/python" -m bench.browsers ${PHOTOS:+--photos "$PHOTOS"}

echo
"$VENV/bin/python" -m bench.cluster

echo
echo "## Core code paths (pytest-benchmark)"
"$VENV/bin/python" -m pytest -q -p no:cacheprovider tests/bench/test_bench_core.py \
    --benchmark-enable --benchmark-max-time=0.25 --benchmark-min-rounds=3 --benchmark-warmup=off \
    --benchmark-columns=min,median,mean,rounds --benchmark-sort=name
