#!/usr/bin/env bash
# Starts and stops the external services the test suite needs, on 127.0.0.1 only.
#
#   scripts/services.sh start   # prints `export VAR=value` lines: eval "$(scripts/services.sh start)"
#   scripts/services.sh stop
#   scripts/services.sh status
#
# Services: ZooKeeper (Debian's `zookeeper` package; installed on first use). State lives under
# $MESOFLOW_SERVICES_DIR (default: $TMPDIR/mesoflow-services) so `stop` finds what `start` began.
# HDFS (a MiniDFSCluster) joins here with the checkpoint-storage work.
set -euo pipefail

dir="${MESOFLOW_SERVICES_DIR:-${TMPDIR:-/tmp}/mesoflow-services}"
log() { printf 'services: %s\n' "$*" >&2; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

ensure_zookeeper_installed() {
  if [ -f /usr/share/java/zookeeper.jar ]; then return; fi
  log "installing ZooKeeper (Debian package)"
  if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq zookeeper >&2
}

# Waits until ZooKeeper answers the `ruok` four-letter word with `imok`.
wait_zookeeper() {
  local port=$1 deadline=$((SECONDS + 60)) reply
  while [ $SECONDS -lt $deadline ]; do
    reply=$( (exec 3<>/dev/tcp/127.0.0.1/"$port" && printf 'ruok' >&3 && timeout 2 cat <&3) 2>/dev/null || true)
    [ "$reply" = "imok" ] && return 0
    sleep 0.5
  done
  log "ZooKeeper did not come up on 127.0.0.1:$port; its log follows"
  tail -n 40 "$dir/zookeeper/zookeeper.log" >&2 || true
  return 1
}

start_zookeeper() {
  local zk="$dir/zookeeper" port
  if [ -f "$zk/pid" ] && kill -0 "$(cat "$zk/pid")" 2>/dev/null; then
    echo "export MESOFLOW_TEST_ZK=$(cat "$zk/address")"
    return
  fi
  ensure_zookeeper_installed
  rm -rf "$zk" && mkdir -p "$zk/data"
  port=$(free_port)
  # Standalone, loopback only, no admin HTTP server (it would listen on all interfaces).
  cat >"$zk/zoo.cfg" <<CFG
tickTime=500
initLimit=10
syncLimit=5
dataDir=$zk/data
clientPort=$port
clientPortAddress=127.0.0.1
admin.enableServer=false
4lw.commands.whitelist=ruok,srvr,stat
maxClientCnxns=0
CFG
  local classpath="/etc/zookeeper/conf:/usr/share/java/zookeeper.jar"
  nohup java -Xmx256m -Dzookeeper.log.dir="$zk" -Dzookeeper.root.logger=INFO,CONSOLE \
    -cp "$classpath" org.apache.zookeeper.server.quorum.QuorumPeerMain "$zk/zoo.cfg" \
    >"$zk/zookeeper.log" 2>&1 &
  echo $! >"$zk/pid"
  echo "127.0.0.1:$port" >"$zk/address"
  wait_zookeeper "$port"
  log "ZooKeeper up on 127.0.0.1:$port (pid $(cat "$zk/pid"))"
  echo "export MESOFLOW_TEST_ZK=127.0.0.1:$port"
}

stop_one() {
  local name=$1 pidfile="$dir/$1/pid" pid
  [ -f "$pidfile" ] || return 0
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -9 "$pid" 2>/dev/null || true
    log "$name stopped"
  fi
  rm -rf "${dir:?}/$name"
}

case "${1:-}" in
  start) mkdir -p "$dir"; start_zookeeper ;;
  stop) stop_one zookeeper ;;
  status)
    for s in zookeeper; do
      if [ -f "$dir/$s/pid" ] && kill -0 "$(cat "$dir/$s/pid")" 2>/dev/null; then
        echo "$s: running at $(cat "$dir/$s/address")"
      else echo "$s: stopped"; fi
    done ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
