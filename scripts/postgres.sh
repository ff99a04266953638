#!/usr/bin/env bash
# Print the URL of a PostgreSQL server for the tests: CASCADE_TEST_POSTGRES
# (default the project's local server, postgres://root@127.0.0.1:5432/postgres)
# when it answers; else a throwaway cluster in target/pg-cluster started with
# Debian's postgresql binaries; else fail with one line naming what is missing.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
url=${CASCADE_TEST_POSTGRES:-postgres://root@127.0.0.1:5432/postgres}
answers() { # host port
    (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}
address=${url#*://}
address=${address#*@}
address=${address%%/*}
host=${address%:*}
port=${address##*:}
[[ "$port" == "$address" ]] && port=5432
if answers "$host" "$port"; then
    echo "$url"
    exit 0
fi
initdb=$(ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | tail -1 || true)
if [[ -z "$initdb" ]]; then
    echo "no PostgreSQL answers at $host:$port and Debian's postgresql package is not installed to start one: install it, or set CASCADE_TEST_POSTGRES" >&2
    exit 1
fi
bin=$(dirname "$initdb")
cluster="$root/target/pg-cluster"
own_port=55432
if ! answers 127.0.0.1 "$own_port"; then
    # initdb refuses to run as root: the cluster belongs to `postgres`.
    as=()
    [[ $(id -u) == 0 ]] && as=(runuser -u postgres --)
    if [[ ! -f "$cluster/PG_VERSION" ]]; then
        mkdir -p "$cluster"
        [[ $(id -u) == 0 ]] && chown postgres "$cluster"
        "${as[@]}" "$initdb" -D "$cluster" -U root --auth=trust >/dev/null
    fi
    "${as[@]}" "$bin/pg_ctl" -D "$cluster" -l "$cluster/log" -w \
        -o "-c listen_addresses=127.0.0.1 -c port=$own_port -c unix_socket_directories=$cluster" start >/dev/null
fi
echo "postgres://root@127.0.0.1:$own_port/postgres"
