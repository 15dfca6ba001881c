# redis_server.sh - sourced by the redis scripts. redis_start LIBRARY DIR
# starts redis-server on a unix socket in DIR, with LIBRARY preloaded (none
# when empty), sets $server (its pid) and $sock, and returns once it
# answers; the caller kills $server on exit.
redis_start() {
	sock=$2/redis.sock
	LD_PRELOAD=$1 redis-server --port 0 --unixsocket "$sock" --save '' \
		--appendonly no --enable-debug-command yes --daemonize no \
		--logfile "$2/log" &
	server=$!
	for _ in $(seq 1000); do
		[ -S "$sock" ] && redis-cli -s "$sock" ping >/dev/null 2>&1 && return 0
		kill -0 "$server" 2>/dev/null || { cat "$2/log" >&2; exit 1; }
		sleep 0.005
	done
	echo "redis-server did not answer on $sock" >&2
	exit 1
}
