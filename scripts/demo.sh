#!/bin/sh
# The main job end to end: build the example server into a sealed image,
# boot it in its own VM with a port forward, fetch a page from it, show
# what the image holds, and stop it with SIGTERM.
set -eu
HULL=${HULL:-bin/hull}
PORT=${PORT:-8080}
mkdir -p .cache
go build -trimpath -o .cache/hello-server ./examples/hello-server
echo "== hull build"
"$HULL" build .cache/hello-server --name hello-server
echo "== hull inspect (summary)"
"$HULL" inspect hello-server | tail -n 1
echo "== hull run -p $PORT:8080"
"$HULL" run hello-server -p "$PORT:8080" &
pid=$!
trap 'kill -INT $pid 2>/dev/null || true' EXIT
i=0
until body=$(curl -fsS -m 2 "http://127.0.0.1:$PORT/" 2>/dev/null); do
	i=$((i + 1))
	if [ $i -gt 600 ] || ! kill -0 $pid 2>/dev/null; then
		echo "demo: the server did not answer" >&2
		exit 1
	fi
	sleep 0.1
done
echo "== curl http://127.0.0.1:$PORT/"
echo "$body"
kill -INT $pid
wait $pid || true
trap - EXIT
echo "== done"
