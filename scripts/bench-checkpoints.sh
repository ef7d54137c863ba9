#!/usr/bin/env bash
# Checkpoint benchmark of mesoflow through the real CLI (`mesoflow run`, local cluster), on the
# built-in job `keyed-state`: KEYS keys of PAYLOAD bytes each are loaded as fast as possible
# (10 M x 100 B: about 1 GB of keyed state), then random keys are updated at KEYS/100 per second
# (1% of the keys per checkpoint interval of 1 s) for UPDATE_S seconds. Figures come from the
# JobManager's `checkpoint completed` log lines (MESOFLOW_LOG=info) and from whole-process wall
# times:
#   full        the first checkpoint once the state is fully loaded (every key group written),
#               to the local file system and, with HDFS, to HDFS
#   incremental p50 / p99 of the checkpoint duration and of the largest synchronous pause
#               (`max_sync_ms`, the longest sync_millis among the subtasks) in the update phase,
#               with the bytes written per checkpoint beside the state size
#   dip         records/s of the job running flat out (load + KEYS updates), checkpointing every
#               1 s vs off, runs alternating; dip = 1 - with / without
#   recovery    kill -9 of one of two executors in the update phase, to the restarted job's
#               first completed checkpoint (an upper bound of "processing again": the job
#               processes before it, and that checkpoint needs up to one interval plus its
#               duration) and to `deployed` of every restarted subtask (the lower bound)
#   mmap        records/s of the flat-out job on the mmap backend vs heap (runs alternating;
#               checkpoint interval 1 h so that only the backend differs)
# and prints them beside the targets: full <= 6 s local, <= 10 s HDFS; dip <= 10%;
# incremental p99 <= 1 s with pause <= 10 ms; recovery <= 10 s; mmap >= 50% of heap.
#
# Usage: scripts/bench-checkpoints.sh [--smoke] [--runs N] [--only LIST] [--no-build]
#   --smoke      100 K keys, a few seconds of updates (checks the harness)
#   --runs N     runs per side for dip and mmap (default 2; alternating)
#   --only LIST  comma-separated subset of: local,hdfs,dip,recovery,mmap (default: all)
# Environment: KEYS (10000000), PAYLOAD (100), UPDATE_S (20), MESOFLOW_BIN (release build),
# MESOFLOW_TEST_HDFS (hdfs://127.0.0.1:PORT from `scripts/services.sh start`; without it the
# HDFS figure is skipped).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MESOFLOW_BIN=${MESOFLOW_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/mesoflow}
SMOKE=0 RUNS=2 ONLY=local,hdfs,dip,recovery,mmap BUILD=1
while [[ $# -gt 0 ]]; do
  case "$1" in
    --smoke) SMOKE=1 ;;
    --runs) RUNS=${2:?--runs needs a number}; shift ;;
    --only) ONLY=${2:?--only needs a list}; shift ;;
    --no-build) BUILD=0 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "error: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
if (( SMOKE )); then KEYS=${KEYS:-100000} UPDATE_S=${UPDATE_S:-4}; fi
KEYS=${KEYS:-10000000} PAYLOAD=${PAYLOAD:-100} UPDATE_S=${UPDATE_S:-20}
RATE=$(( KEYS / 100 ))
EVENTS=$(( KEYS + RATE * UPDATE_S ))
want() { [[ ",$ONLY," == *",$1,"* ]]; }

if (( BUILD )); then
  echo "building mesoflow (release)..." >&2
  (cd "$ROOT" && cargo build --release -q -p mesoflow-scheduler -p mesoflow-executor \
    --bin mesoflow --bin mesoflow-executor) >&2
fi
[[ -x $MESOFLOW_BIN ]] || { echo "error: $MESOFLOW_BIN missing" >&2; exit 2; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/bench-checkpoints.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
load() { cut -d' ' -f1 /proc/loadavg; }
RESULTS=()
row() { RESULTS+=("$(printf '| %s | %s | %s | %s |' "$1" "$2" "$3" "$4")"); echo "${RESULTS[-1]}" >&2; }

# mesoflow run keyed-state with the given flags; stderr (info log) to $WORK/$name.log.
run_job() {
  local name=$1; shift
  MESOFLOW_LOG=info "$MESOFLOW_BIN" run keyed-state -p "keys=$KEYS" -p "payload=$PAYLOAD" \
    --parallelism 2 --sink checksum "$@" >"$WORK/$name.out" 2>"$WORK/$name.log"
}

# checkpoint lines of a log -> "id size bytes_written duration_ms max_sync_ms" per line
ckpts() {
  sed 's/\x1b\[[0-9;]*m//g' "$1" | grep 'checkpoint completed' |
    sed -E 's/.*checkpoint=([0-9]+).*size=([0-9]+).*bytes_written=([0-9]+).*duration_ms=([0-9]+).*max_sync_ms=([0-9]+).*/\1 \2 \3 \4 \5/'
}
pct() { sort -g | awk -v q="$1" '{ v[NR] = $1 } END { if (!NR) { print "-"; exit } i = int(q * NR + 0.999999); if (i < 1) i = 1; print v[i] }'; }
mib() { awk -v b="$1" 'BEGIN { printf "%.0f MiB", b / 1048576 }'; }

# Full and incremental checkpoints to the directory URI $2.
checkpoint_figures() {
  local label=$1 dir=$2 target_full=$3
  local l; l=$(load)
  echo "[$label] keyed-state keys=$KEYS payload=$PAYLOAD, $RATE updates/s for ${UPDATE_S}s (load $l)" >&2
  run_job "$label" -p "events=$EVENTS" -p "rate=$RATE" \
    -Dexecution.checkpointing.interval=1s "-Dstate.checkpoints.dir=$dir" || {
    echo "error: $label run failed:" >&2; tail -n 5 "$WORK/$label.log" >&2; return 1; }
  ckpts "$WORK/$label.log" >"$WORK/$label.ck"
  local max; max=$(awk '$2 > m { m = $2 } END { print m + 0 }' "$WORK/$label.ck")
  # Loaded: the state has reached (almost) its final size.
  awk -v m="$max" '$2 >= 0.98 * m' "$WORK/$label.ck" >"$WORK/$label.loaded"
  [[ -s $WORK/$label.loaded ]] || { echo "error: $label: no checkpoint completed" >&2; return 1; }
  read -r _ size written dur sync <"$WORK/$label.loaded"
  row "full checkpoint, $label" "$(awk -v d="$dur" 'BEGIN { printf "%.2f s", d / 1000 }') ($(mib "$size") state, $(mib "$written") written, pause $sync ms; load $l)" \
    "<= $target_full s" "$(awk -v d="$dur" -v t="$target_full" 'BEGIN { print (d <= t * 1000) ? "met" : "missed" }')"
  # Incremental: the later checkpoints (updates only).
  tail -n +2 "$WORK/$label.loaded" >"$WORK/$label.inc"
  if [[ -s $WORK/$label.inc ]]; then
    local n p50 p99 s50 s99 w50
    n=$(wc -l <"$WORK/$label.inc")
    p50=$(awk '{ print $4 }' "$WORK/$label.inc" | pct 0.5); p99=$(awk '{ print $4 }' "$WORK/$label.inc" | pct 0.99)
    s50=$(awk '{ print $5 }' "$WORK/$label.inc" | pct 0.5); s99=$(awk '{ print $5 }' "$WORK/$label.inc" | pct 0.99)
    w50=$(awk '{ print $3 }' "$WORK/$label.inc" | pct 0.5)
    row "incremental (1%/s), $label" "$n checkpoints: duration p50 $p50 ms, p99 $p99 ms; pause p50 $s50 ms, p99 $s99 ms; $(mib "$w50") written (p50); load $l" \
      "p99 <= 1000 ms, pause <= 10 ms" \
      "$(awk -v a="$p99" -v b="$s99" 'BEGIN { print (a <= 1000 && b <= 10) ? "met" : "missed" }')"
  fi
}

if want local; then checkpoint_figures local "file://$WORK/ck-local" 6; fi
if want hdfs; then
  if [[ -n ${MESOFLOW_TEST_HDFS:-} ]]; then
    checkpoint_figures hdfs "${MESOFLOW_TEST_HDFS%/}/bench-checkpoints-$$" 10
  else
    echo "note: MESOFLOW_TEST_HDFS unset (scripts/services.sh start): skipping HDFS" >&2
  fi
fi

# wall seconds of a flat-out run (load + KEYS updates); extra flags follow
flat_out() {
  local name=$1; shift
  local t0 t1
  t0=$(date +%s.%N)
  run_job "$name" -p "events=$(( 2 * KEYS ))" -p rate=0 "$@" || {
    echo "error: $name failed:" >&2; tail -n 5 "$WORK/$name.log" >&2; return 1; }
  t1=$(date +%s.%N)
  awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f\n", b - a }'
}
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

if want dip; then
  : >"$WORK/dip.on"; : >"$WORK/dip.off"; l=$(load)
  for ((r = 1; r <= RUNS; r++)); do
    echo "[dip] run $r/$RUNS (load $(load))" >&2
    flat_out dip-off >>"$WORK/dip.off"
    flat_out dip-on -Dexecution.checkpointing.interval=1s "-Dstate.checkpoints.dir=file://$WORK/ck-dip" >>"$WORK/dip.on"
    n_ck=$(ckpts "$WORK/dip-on.log" | wc -l)
    rm -rf "$WORK/ck-dip"
  done
  off=$(median <"$WORK/dip.off"); on=$(median <"$WORK/dip.on")
  row "throughput dip, checkpoint 1 s vs off" \
    "$(awk -v a="$off" -v b="$on" -v e="$(( 2 * KEYS ))" 'BEGIN { printf "%.1f%% (%.0f K vs %.0f K records/s; wall %.2f vs %.2f s)", (1 - a / b) * 100, e / b / 1000, e / a / 1000, b, a }'), $n_ck checkpoints in the last run; median of $RUNS; load $l-$(load)" \
    "<= 10%" "$(awk -v a="$off" -v b="$on" 'BEGIN { print (1 - a / b <= 0.10) ? "met" : "missed" }')"
fi

if want recovery; then
  l=$(load)
  echo "[recovery] 2 executors x 1 slot, kill -9 of one in the update phase (load $l)" >&2
  log="$WORK/recovery.log"
  MESOFLOW_LOG=info "$MESOFLOW_BIN" run keyed-state -p "keys=$KEYS" -p "payload=$PAYLOAD" \
    -p "events=$(( KEYS + RATE * (UPDATE_S + 30) ))" -p "rate=$RATE" --parallelism 2 --sink checksum \
    --executors 2 --slots 1 -Dheartbeat.interval=1s -Dheartbeat.timeout=5s \
    -Drestart-strategy.type=fixed-delay -Drestart-strategy.fixed-delay.attempts=3 \
    -Drestart-strategy.fixed-delay.delay=200ms \
    -Dexecution.checkpointing.interval=1s "-Dstate.checkpoints.dir=file://$WORK/ck-recovery" \
    >"$WORK/recovery.out" 2>"$log" &
  cli=$!
  # Wait for a checkpoint of the loaded state: two in a row within 2% of each other in size.
  for ((i = 0; i < 600; i++)); do
    sleep 0.5
    kill -0 "$cli" 2>/dev/null || break
    if ckpts "$log" | tail -n 2 | awk '{ s[NR] = $2 } END { exit !(NR == 2 && s[2] > 0 && s[1] / s[2] > 0.98 && s[1] / s[2] < 1.02) }'; then break; fi
  done
  # The newest TaskManager still alive (an earlier one may have been replaced already).
  pid=
  for p in $(sed 's/\x1b\[[0-9;]*m//g' "$log" | grep 'started TaskManager' | sed -E 's/.*\(pid ([0-9]+)\).*/\1/' | tac); do
    if kill -0 "$p" 2>/dev/null; then pid=$p; break; fi
  done
  [[ -n $pid ]] || { echo "error: no live TaskManager to kill" >&2; kill "$cli"; exit 1; }
  before=$(ckpts "$log" | wc -l)
  # Restarts before the kill (a TaskManager lost to a timeout) are not this recovery.
  restarts_before=$(sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -c 'restarting the job' || true)
  ms_now() { date +%s%3N; }
  killed=$(ms_now)
  kill -9 "$pid"
  deployed= completed=
  for ((i = 0; i < 1200; i++)); do
    plain=$(sed 's/\x1b\[[0-9;]*m//g' "$log")
    restarted=$(grep -n 'restarting the job' <<<"$plain" | sed -n "$(( restarts_before + 1 ))p" | cut -d: -f1 || true)
    if [[ -n $restarted && -z $deployed ]] && (( $(tail -n +"$restarted" <<<"$plain" | grep -c 'deployed') >= 2 )); then
      deployed=$(( $(ms_now) - killed ))
    fi
    if [[ -n $restarted ]] && (( $(ckpts "$log" | wc -l) > before )) &&
      tail -n +"$restarted" <<<"$plain" | grep -q 'checkpoint completed'; then
      completed=$(( $(ms_now) - killed )); break
    fi
    kill -0 "$cli" 2>/dev/null || break
    sleep 0.05
  done
  wait "$cli" || true
  restarts=$(sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -o 'the job restarted [0-9]* time(s)' || echo "no restart line")
  row "recovery after kill -9 of 1 of 2 executors" \
    "${completed:-?} ms to the first checkpoint after the restart, ${deployed:-?} ms to every subtask deployed ($restarts; result $(cat "$WORK/recovery.out"); load $l)" \
    "<= 10 s" "$(awk -v c="${completed:-999999}" 'BEGIN { print (c <= 10000) ? "met" : "missed" }')"
fi

if want mmap; then
  : >"$WORK/mmap.heap"; : >"$WORK/mmap.mmap"; l=$(load)
  for ((r = 1; r <= RUNS; r++)); do
    echo "[mmap] run $r/$RUNS (load $(load))" >&2
    flat_out heap -Dexecution.checkpointing.interval=1h "-Dstate.checkpoints.dir=file://$WORK/ck-mm" >>"$WORK/mmap.heap"
    flat_out mmap -Dexecution.checkpointing.interval=1h "-Dstate.checkpoints.dir=file://$WORK/ck-mm" \
      -Dstate.backend.type=mmap >>"$WORK/mmap.mmap"
    rm -rf "$WORK/ck-mm"
  done
  h=$(median <"$WORK/mmap.heap"); m=$(median <"$WORK/mmap.mmap")
  row "mmap vs heap, $KEYS keys" \
    "$(awk -v h="$h" -v m="$m" -v e="$(( 2 * KEYS ))" 'BEGIN { printf "%.0f%% (%.0f K vs %.0f K records/s; wall %.2f vs %.2f s)", h / m * 100, e / m / 1000, e / h / 1000, m, h }'), median of $RUNS; load $l-$(load)" \
    ">= 50%" "$(awk -v h="$h" -v m="$m" 'BEGIN { print (h / m >= 0.5) ? "met" : "missed" }')"
fi

echo
echo "keyed-state keys=$KEYS payload=$PAYLOAD, parallelism 2, $(nproc) cores; updates $RATE/s for ${UPDATE_S}s"
echo
echo "| measure | figure | target | |"
echo "|---|---|---|---|"
printf '%s\n' "${RESULTS[@]}"
