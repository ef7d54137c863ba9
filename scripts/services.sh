#!/usr/bin/env bash
# Starts and stops the external services the test suite needs, on 127.0.0.1 only.
#
#   scripts/services.sh start   # prints `export VAR=value` lines: eval "$(scripts/services.sh start)"
#   scripts/services.sh stop
#   scripts/services.sh status
#
# Services: ZooKeeper (Debian's `zookeeper` package; installed on first use) and HDFS (Hadoop's
# MiniDFSCluster with one DataNode, launched by scripts/minidfs, built with Maven on first use; the
# first build downloads the Hadoop test cluster from Maven Central). State lives under
# $MESOFLOW_SERVICES_DIR (default: $TMPDIR/mesoflow-services) so `stop` finds what `start` began.
#
# Stopping and restarting the NameNode from a test ("HDFS gone, then back"): everything needed is
# in $MESOFLOW_TEST_HDFS_DIR (exported by `start`):
#   pid      the cluster's JVM (NameNode and DataNode run in one process)
#   address  hdfs://127.0.0.1:PORT, written by the launcher once the cluster is up
#   port     the NameNode RPC port; data/  the cluster's files
#   cmd      a bash command that relaunches the cluster on the same port and data, unformatted
# Stop:    kill "$(cat pid)" and wait until the process is gone (it shuts down cleanly on SIGTERM).
# Restart: rm -f address; bash -c "$(cat cmd)" >>minidfs.log 2>&1 & echo $! >pid
#          then wait for `address` to reappear. `cmd` execs java, so $! is the JVM itself.
# Keep `pid` current: `stop` kills the process it names.
set -euo pipefail

dir="${MESOFLOW_SERVICES_DIR:-${TMPDIR:-/tmp}/mesoflow-services}"
minidfs_src="$(cd "$(dirname "$0")" && pwd)/minidfs"
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

ensure_maven_installed() {
  if command -v mvn >/dev/null && command -v java >/dev/null; then return; fi
  log "installing Maven and a JDK (Debian packages)"
  if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq maven default-jdk-headless >&2
}

# Builds the MiniDFSCluster launcher into scripts/minidfs/target unless it is up to date.
build_minidfs() {
  local class="$minidfs_src/target/classes/io/mesoflow/minidfs/MiniDfs.class"
  local java="$minidfs_src/src/main/java/io/mesoflow/minidfs/MiniDfs.java"
  if [ -f "$class" ] && [ -d "$minidfs_src/target/dependency" ] \
    && [ "$class" -nt "$java" ] && [ "$class" -nt "$minidfs_src/pom.xml" ]; then
    return
  fi
  ensure_maven_installed
  local started=$SECONDS buildlog="$dir/minidfs-build.log"
  log "building the HDFS test cluster launcher (first run: downloads ~110 MB of Hadoop from Maven Central)"
  if ! mvn -B -q -f "$minidfs_src/pom.xml" package >"$buildlog" 2>&1; then
    log "building scripts/minidfs failed; the Maven output ends with"
    tail -n 40 "$buildlog" >&2
    return 1
  fi
  log "HDFS launcher built in $((SECONDS - started)) s"
}

# Waits until the launcher has written the NameNode URI and the NameNode accepts connections.
wait_hdfs() {
  local hdfs=$1 port=$2 deadline=$((SECONDS + 120))
  while [ $SECONDS -lt $deadline ]; do
    if ! kill -0 "$(cat "$hdfs/pid")" 2>/dev/null; then
      log "the HDFS test cluster exited during startup; its log follows"
      tail -n 60 "$hdfs/minidfs.log" >&2 || true
      return 1
    fi
    if [ -s "$hdfs/address" ] && (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null; then
      return 0
    fi
    sleep 1
  done
  log "HDFS did not come up on 127.0.0.1:$port within 120 s; its log follows"
  tail -n 60 "$hdfs/minidfs.log" >&2 || true
  stop_one hdfs
  return 1
}

start_hdfs() {
  local hdfs="$dir/hdfs" port
  if [ -f "$hdfs/pid" ] && kill -0 "$(cat "$hdfs/pid")" 2>/dev/null; then
    echo "export MESOFLOW_TEST_HDFS=$(cat "$hdfs/address")"
    echo "export MESOFLOW_TEST_HDFS_DIR=$hdfs"
    return
  fi
  build_minidfs
  rm -rf "$hdfs" && mkdir -p "$hdfs/data"
  port=$(free_port)
  echo "$port" >"$hdfs/port"
  # One JVM runs the NameNode and the DataNode; every socket is bound to 127.0.0.1 (see
  # MiniDfs.java). IPv4 only, so nothing listens on an IPv6 wildcard either.
  local java_cmd
  java_cmd=$(printf '%q ' java -Xmx512m -Djava.net.preferIPv4Stack=true \
    -Dorg.slf4j.simpleLogger.defaultLogLevel=warn -Dorg.slf4j.simpleLogger.showDateTime=true \
    -cp "$minidfs_src/target/classes:$minidfs_src/target/dependency/*" io.mesoflow.minidfs.MiniDfs \
    --data-dir "$hdfs/data" --uri-file "$hdfs/address" --port "$port")
  echo "exec $java_cmd--format false" >"$hdfs/cmd"
  nohup bash -c "exec $java_cmd--format true" >"$hdfs/minidfs.log" 2>&1 &
  echo $! >"$hdfs/pid"
  wait_hdfs "$hdfs" "$port"
  log "HDFS up at $(cat "$hdfs/address") (pid $(cat "$hdfs/pid"))"
  echo "export MESOFLOW_TEST_HDFS=$(cat "$hdfs/address")"
  echo "export MESOFLOW_TEST_HDFS_DIR=$hdfs"
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
  start) mkdir -p "$dir"; start_zookeeper; start_hdfs ;;
  stop) stop_one hdfs; stop_one zookeeper ;;
  status)
    for s in zookeeper hdfs; do
      if [ -f "$dir/$s/pid" ] && kill -0 "$(cat "$dir/$s/pid")" 2>/dev/null; then
        echo "$s: running at $(cat "$dir/$s/address")"
      else echo "$s: stopped"; fi
    done ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
