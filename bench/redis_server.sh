# redis_server.sh - sourced by the redis scripts. It makes a temporary
# directory, $work, removed on exit with the server still running in it.
# redis_start LIBRARY starts redis-server on a unix socket there, with
# LIBRARY preloaded (none when empty), sets $server (its pid) and $sock,
# and returns once it answers.
work=$(mktemp -d)
server=
redis_end() {
	[ -n "$server" ] && kill "$server" 2>/dev/null
	rm -rf "$work"
}
trap redis_end EXIT

redis_start() {
	sock=$work/redis.sock
	LD_PRELOAD=$1 redis-server --port 0 --unixsocket "$sock" --save '' \
		--appendonly no --enable-debug-command yes --daemonize no \
		--logfile "$work/log" &
	server=$!
	for _ in $(seq 1000); do
		[ -S "$sock" ] && redis-cli -s "$sock" ping >/dev/null 2>&1 && return 0
		kill -0 "$server" 2>/dev/null || { cat "$work/log" >&2; exit 1; }
		sleep 0.005
	done
	echo "redis-server did not answer on $sock" >&2
	exit 1
}
