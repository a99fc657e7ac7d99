#!/usr/bin/env bash
# python_example_ddp: a short run of examples/pytorch/ddp_fashion_mnist.py on 2 ranks (the
# example exits non-zero when ranks end with different parameters). MASTER_PORT is a free
# port, so that parallel test runs on one machine do not collide.
#
# usage: run_example.sh PYTHON MPIEXEC EXAMPLE [ARGS...]
set -euo pipefail
python=$1 mpiexec=$2 example=$3
shift 3
MASTER_PORT=$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export MASTER_PORT MASTER_ADDR=127.0.0.1
exec "$mpiexec" -n 2 --oversubscribe --bind-to none "$python" "$example" "$@"
