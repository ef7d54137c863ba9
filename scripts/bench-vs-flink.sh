#!/usr/bin/env bash
# mesoflow versus Apache Flink, side by side on this machine, in one run (issue #4).
#
# For every workload of docs/workloads.md (each with checkpointing off and every 1 s) this runs
# `mesoflow run` (release build) and the Flink baseline jar (tests/peers/flink, local MiniCluster)
# back to back, alternating, RUNS times each, and prints a table: events, median wall time,
# records/s, records per CPU-second (user+sys of the whole process tree, JVM included), peak RSS
# (largest process), and the mesoflow/Flink ratio of the medians. Every run's
# `records=<N> checksum=<hex>` line must equal the other engine's, or the row says INVALID.
#
# mesoflow runs distributed (a JobManager in the CLI, TaskManagers as local `mesoflow-executor`
# processes; GNU time's figures include those children). Most rows use the default shape, one
# executor with two slots (all channels local). The windowed-count-100k and nexmark-q5 rows run
# mesoflow in two shapes, `--executors 1 --slots 2` (1x2: local channels) and `--executors 2
# --slots 1` (2x1: every keyed exchange over the QUIC shuffle with TLS), alternating with each
# other and with Flink; each shape is a row of the table (column `shape`, executors x slots), all
# shapes' results must agree with each other and with Flink, and a second table gives the
# 2x1 / 1x2 ratios.
#
# Usage: scripts/bench-vs-flink.sh [--smoke] [--runs N] [--only REGEX] [--flink-only]
#                                  [--no-build] [--out FILE]
#   --smoke       small sizes (about a minute in total), for CI; implies --runs 1 unless given
#   --runs N      runs per engine and workload (default 3)
#   --only REGEX  only workloads whose row name matches (e.g. --only 'nexmark|stateless')
#   --flink-only  run only the Flink side (to test the harness before `mesoflow run` exists)
#   --no-build    use the existing binaries
#   --out FILE    also write the table (markdown) to FILE
# Environment:
#   MESOFLOW_BIN              mesoflow CLI (default: $CARGO_TARGET_DIR or target, release/mesoflow)
#   MESOFLOW_CHECKPOINT_ARGS  mesoflow flags for "checkpoint every 1 s" (default:
#                             -Dexecution.checkpointing.interval=1s, Flink's key, and
#                             -Dstate.checkpoints.dir=file://<work dir>/checkpoints/mesoflow)
# Checkpointed rows: both engines checkpoint every second to the local file system, into the
# runner's work dir (emptied after every run); Flink with its hash-map (heap) state backend and
# full checkpoints, or RocksDB with incremental checkpoints where a row says state_backend=rocksdb.
#   FLINK_JAVA_OPTS           extra JVM flags for the Flink side (default: none, JVM ergonomics)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
FLINK_DIR="$ROOT/tests/peers/flink"
FLINK_JAR="$FLINK_DIR/target/mesoflow-flink-baseline.jar"
MESOFLOW_BIN=${MESOFLOW_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/mesoflow}
MESOFLOW_CHECKPOINT_ARGS=${MESOFLOW_CHECKPOINT_ARGS:-}
FLINK_JAVA_OPTS=${FLINK_JAVA_OPTS:-}

SMOKE=0 RUNS= ONLY= FLINK_ONLY=0 BUILD=1 OUT=
while [[ $# -gt 0 ]]; do
  case "$1" in
    --smoke) SMOKE=1 ;;
    --runs) RUNS=${2:?--runs needs a number}; shift ;;
    --only) ONLY=${2:?--only needs a regex}; shift ;;
    --flink-only) FLINK_ONLY=1 ;;
    --no-build) BUILD=0 ;;
    --out) OUT=${2:?--out needs a file}; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "error: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
if [[ -z $RUNS ]]; then RUNS=$(( SMOKE ? 1 : 3 )); fi
if ! [[ $RUNS =~ ^[1-9][0-9]*$ ]]; then echo "error: --runs must be a positive integer, got '$RUNS'" >&2; exit 2; fi

need() { command -v "$1" >/dev/null 2>&1 || { echo "error: '$1' not found: $2" >&2; exit 2; }; }
if [[ ! -x /usr/bin/time ]] && [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
  echo "installing GNU time (Debian package 'time') for CPU and RSS figures" >&2
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time; } >&2 || true
fi
[[ -x /usr/bin/time ]] || { echo "error: /usr/bin/time not found: install GNU time (apt-get install time)" >&2; exit 2; }
need java "install a JDK 17+"
need awk "install awk"

# ---- build -------------------------------------------------------------------------------
if (( BUILD )); then
  need mvn "install Maven 3.8+ (downloads go to ~/.m2)"
  echo "building the Flink baseline (Maven)..." >&2
  mvn -q -B -f "$FLINK_DIR/pom.xml" package -DskipTests >&2
  if (( ! FLINK_ONLY )); then
    echo "building mesoflow (release)..." >&2
    (cd "$ROOT" && cargo build --release -q -p mesoflow-scheduler -p mesoflow-executor \
      --bin mesoflow --bin mesoflow-executor) >&2
  fi
fi
[[ -f $FLINK_JAR ]] || { echo "error: $FLINK_JAR missing: run without --no-build" >&2; exit 2; }
if (( ! FLINK_ONLY )) && [[ ! -x $MESOFLOW_BIN ]]; then
  echo "error: $MESOFLOW_BIN missing: run without --no-build or set MESOFLOW_BIN" >&2; exit 2
fi

# ---- workloads ----------------------------------------------------------------------------
# row name | job | parameters (both engines) | Flink-only parameters | checkpoint modes
# (0 = off, 1 = every second; default "0 1") | mesoflow shapes, EXECUTORSxSLOTS (default: the
# CLI's default, one executor with enough slots, shown as 1x2)
if (( SMOKE )); then
  # Small sizes; checkpointing only where it matters most, so that the whole smoke run takes
  # about a minute (mostly JVM and MiniCluster start-up).
  WORKLOADS=(
    "stateless|stateless|events=300000 keys=100000||0"
    "wordcount|wordcount|events=30000||0"
    "windowed-count-100k|windowed-count|events=300000 keys=100000 window_ms=1000||0 1|1x2 2x1"
    "windowed-count-10m|windowed-count|events=300000 keys=10000000 window_ms=10000|state_backend=rocksdb|0"
    "sliding-count-60x|sliding-count|events=50000 keys=1000 window_ms=6000 slide_ms=100||0"
    "nexmark-q1|nexmark-q1|events=300000||0"
    "nexmark-q5|nexmark-q5|events=300000||0|1x2 2x1"
  )
else
  # Sized so that one Flink run takes about 30-120 s on a 2-core machine.
  WORKLOADS=(
    "stateless|stateless|events=10000000 keys=100000|"
    "wordcount|wordcount|events=1000000|"
    "windowed-count-100k|windowed-count|events=20000000 keys=100000 window_ms=1000|||1x2 2x1"
    "windowed-count-10m|windowed-count|events=4000000 keys=10000000 window_ms=10000|state_backend=rocksdb"
    "sliding-count-60x|sliding-count|events=1000000 keys=10000 window_ms=6000 slide_ms=100|"
    "tumbling-6s (sliding's twin)|windowed-count|events=1000000 keys=10000 window_ms=6000||0"
    "nexmark-q1|nexmark-q1|events=10000000|"
    "nexmark-q5|nexmark-q5|events=10000000|||1x2 2x1"
  )
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/bench-vs-flink.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
CKPT_DIR="$WORK/checkpoints"
if [[ -z $MESOFLOW_CHECKPOINT_ARGS ]]; then
  MESOFLOW_CHECKPOINT_ARGS="-Dexecution.checkpointing.interval=1s -Dstate.checkpoints.dir=file://$CKPT_DIR/mesoflow"
fi

# run_engine ENGINE JOB PARAMS FLINK_PARAMS CHECKPOINT(0|1) [SHAPE]
#   -> "wall user sys maxrss_kb result"
# SHAPE (mesoflow only) is EXECUTORSxSLOTS, e.g. 2x1; empty = the CLI's default shape.
run_engine() {
  local engine=$1 job=$2 params=$3 flink_params=$4 ckpt=$5 shape=${6:-}
  local -a cmd
  if [[ $engine == flink ]]; then
    # shellcheck disable=SC2206 # word splitting of the parameter lists is intended
    cmd=(java $FLINK_JAVA_OPTS -jar "$FLINK_JAR" "$job" $params $flink_params parallelism=2)
    (( ckpt )) && cmd+=(checkpoint_ms=1000 "checkpoint_dir=$CKPT_DIR/flink")
  else
    cmd=("$MESOFLOW_BIN" run "$job")
    local kv
    for kv in $params; do cmd+=(-p "$kv"); done
    cmd+=(--parallelism 2 --sink checksum)
    [[ -n $shape ]] && cmd+=(--executors "${shape%x*}" --slots "${shape#*x}")
    # shellcheck disable=SC2206
    (( ckpt )) && cmd+=($MESOFLOW_CHECKPOINT_ARGS)
  fi
  local out="$WORK/out" err="$WORK/err" tm="$WORK/time"
  local rc=0
  /usr/bin/time -f '%e %U %S %M' -o "$tm" "${cmd[@]}" >"$out" 2>"$err" || rc=$?
  # Every run starts without checkpoints (and the disk does not fill up over a long run).
  rm -rf "$CKPT_DIR"
  if (( rc != 0 )); then
    echo "warning: $engine $job failed: ${cmd[*]}" >&2
    tail -n 5 "$err" | sed 's/^/  | /' >&2
    echo "0 0 0 0 FAILED"
    return
  fi
  local result
  result=$(grep -E '^records=[0-9]+ checksum=[0-9a-f]{16}$' "$out" | tail -n 1 || true)
  [[ -n $result ]] || result=NO-RESULT-LINE
  echo "$(tail -n 1 "$tm") ${result// /_}"
}

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || b == 0) print "-"; else printf "%.2fx", a / b }'; }

# stats FILE EVENTS -> "wall records/s records-per-CPU-s rss_mib" (medians) or "- - - -"
stats() {
  local f=$1 events=$2
  # Failed runs carry no measurements; GNU time's resolution is 10 ms, hence the guards.
  if [[ ! -s $f ]] || ! grep -vq FAILED "$f"; then echo "- - - -"; return; fi
  echo "$(awk '$5 != "FAILED" { print $1 }' "$f" | median)" \
    "$(awk -v n="$events" '$5 != "FAILED" && $1 > 0 { print n / $1 }' "$f" | median)" \
    "$(awk -v n="$events" '$5 != "FAILED" && ($2 + $3) > 0 { print n / ($2 + $3) }' "$f" | median)" \
    "$(awk '$5 != "FAILED" { print $4 / 1024 }' "$f" | median)"
}

# Checkpointed rows need `mesoflow run` to accept MESOFLOW_CHECKPOINT_ARGS; until it does they
# are skipped (and said so) rather than spending Flink runs on rows that cannot be compared.
CKPT_OK=1
if (( ! FLINK_ONLY )); then
  # shellcheck disable=SC2086
  if ! "$MESOFLOW_BIN" run stateless -p events=10 --sink checksum $MESOFLOW_CHECKPOINT_ARGS >/dev/null 2>"$WORK/probe"; then
    CKPT_OK=0
    echo "note: mesoflow does not accept '$MESOFLOW_CHECKPOINT_ARGS' ($(tail -n 1 "$WORK/probe")); skipping the ckpt=1s rows" >&2
  fi
  rm -rf "$CKPT_DIR"
fi

ROWS=()
SHAPE_ROWS=()
INVALID_ROWS=0
echo "runs per engine: $RUNS; parallelism 2; $(nproc) cores" >&2
for w in "${WORKLOADS[@]}"; do
  IFS='|' read -r name job params flink_params ckpt_modes shapes <<<"$w"
  events=$(sed -n 's/.*events=\([0-9]*\).*/\1/p' <<<"$params")
  # "-" is the CLI's default shape (no --executors/--slots flags).
  read -r -a shape_list <<<"${shapes:--}"
  for ckpt in ${ckpt_modes:-0 1}; do
    row="$name$( (( ckpt )) && echo ' ckpt=1s' || echo ' ckpt=off')"
    if [[ -n $ONLY ]] && ! [[ $row =~ $ONLY ]]; then continue; fi
    if (( ckpt && ! CKPT_OK )); then
      ROWS+=("| $row | ${shapes:-1x2} | $events | - | - | - | - | - | - | skipped: mesoflow run has no checkpointing yet |")
      continue
    fi
    : >"$WORK/flink.runs"
    for shape in "${shape_list[@]}"; do : >"$WORK/mesoflow.$shape.runs"; done
    for ((r = 1; r <= RUNS; r++)); do
      # mesoflow's shapes in turn, their order rotated every run, then Flink.
      order=()
      for ((i = 0; i < ${#shape_list[@]}; i++)); do
        order+=("${shape_list[(i + r - 1) % ${#shape_list[@]}]}")
      done
      if (( ! FLINK_ONLY )); then
        for shape in "${order[@]}"; do
          echo "[$row] run $r/$RUNS: mesoflow$([[ $shape != - ]] && echo " $shape")" >&2
          run_engine mesoflow "$job" "$params" "$flink_params" "$ckpt" "${shape#-}" >>"$WORK/mesoflow.$shape.runs"
        done
      fi
      echo "[$row] run $r/$RUNS: flink" >&2
      run_engine flink "$job" "$params" "$flink_params" "$ckpt" >>"$WORK/flink.runs"
    done
    # Correctness: every run of both engines, in every shape, must print the same result line.
    m_runs=()
    for shape in "${shape_list[@]}"; do m_runs+=("$WORK/mesoflow.$shape.runs"); done
    results=$(cat "$WORK/flink.runs" "${m_runs[@]}" | awk '{ print $5 }' | sort -u)
    status=ok
    if grep -q FAILED "${m_runs[@]}"; then
      status="INVALID (mesoflow failed$(for shape in "${shape_list[@]}"; do
        grep -q FAILED "$WORK/mesoflow.$shape.runs" && [[ $shape != - ]] && echo -n " $shape"; done))"
    elif grep -q FAILED "$WORK/flink.runs"; then status="INVALID (Flink failed)"
    elif grep -q NO-RESULT <<<"$results"; then status="INVALID (no result line)"
    elif [[ $(wc -l <<<"$results") -ne 1 ]]; then
      status="INVALID (checksums differ)"
      # Say which side disagrees: shapes among themselves, or mesoflow with Flink.
      if (( ${#shape_list[@]} > 1 )) && [[ $(cat "${m_runs[@]}" | awk '{ print $5 }' | sort -u | wc -l) -ne 1 ]]; then
        status="INVALID (checksums differ between mesoflow shapes)"
      fi
    fi
    result=$(grep -vE 'FAILED|NO-RESULT' <<<"$results" | tr _ ' ' | paste -sd '/' - || true)
    if [[ $status == INVALID* ]]; then INVALID_ROWS=$((INVALID_ROWS + 1)); fi
    if (( FLINK_ONLY )) && [[ $status == ok ]]; then status=flink-only; fi
    read -r f_wall f_rps f_rpc f_rss <<<"$(stats "$WORK/flink.runs" "$events")"
    for shape in "${shape_list[@]}"; do
      read -r m_wall m_rps m_rpc m_rss <<<"$(stats "$WORK/mesoflow.$shape.runs" "$events")"
      eval "rpc_${shape//-/d}=$m_rpc rps_${shape//-/d}=$m_rps"
      label=${shape/#-/1x2}
      ROWS+=("$(awk -v row="$row" -v sh="$label" -v ev="$events" -v mw="$m_wall" -v mr="$m_rps" -v mc="$m_rpc" -v mm="$m_rss" \
        -v fw="$f_wall" -v fr="$f_rps" -v fc="$f_rpc" -v fm="$f_rss" -v r1="$(ratio "$m_rps" "$f_rps")" \
        -v r2="$(ratio "$m_rpc" "$f_rpc")" -v st="$status" -v res="$result" '
        function k(x) { return x == "-" ? "-" : sprintf("%.0f K", x / 1000) }
        function s(x) { return x == "-" ? "-" : sprintf("%.2f", x) }
        function mb(x) { return x == "-" ? "-" : sprintf("%.0f", x) }
        BEGIN { printf "| %s | %s | %s | %s / %s | %s / %s | %s / %s | %s / %s | %s | %s | %s `%s` |\n",
          row, sh, ev, s(mw), s(fw), k(mr), k(fr), k(mc), k(fc), mb(mm), mb(fm), r1, r2, st, res }')")
      echo "${ROWS[-1]}" >&2
    done
    if [[ " ${shape_list[*]} " == *" 1x2 "* && " ${shape_list[*]} " == *" 2x1 "* ]] && (( ! FLINK_ONLY )); then
      SHAPE_ROWS+=("$(awk -v row="$row" -v c1="$rpc_1x2" -v c2="$rpc_2x1" -v w1="$rps_1x2" -v w2="$rps_2x1" \
        -v fc="$f_rpc" -v rc="$(ratio "$rpc_2x1" "$rpc_1x2")" -v rw="$(ratio "$rps_2x1" "$rps_1x2")" \
        -v rf="$(ratio "$rpc_2x1" "$f_rpc")" -v st="$status" '
        function k(x) { return x == "-" ? "-" : sprintf("%.0f K", x / 1000) }
        BEGIN {
          t1 = (c2 == "-") ? "-" : (c2 >= 1000000 ? "met" : "missed")
          t2 = (c1 == "-" || c2 == "-" || c1 == 0) ? "-" : (c2 / c1 >= 0.5 ? "met" : "missed")
          printf "| %s | %s / %s | %s | %s / %s | %s | %s | %s | %s (>= 1 M per CPU-s), %s (>= 50%% of 1x2) |\n",
            row, k(c1), k(c2), rc, k(w1), k(w2), rw, k(fc), rf, t1, t2 }')")
      echo "${SHAPE_ROWS[-1]}" >&2
    fi
  done
done

{
  echo
  echo "| workload | shape | events | wall s (mesoflow / Flink) | records/s | records per CPU-s | peak RSS MiB | ratio records/s | ratio per CPU-s | result |"
  echo "|---|---|---|---|---|---|---|---|---|---|"
  printf '%s\n' "${ROWS[@]}"
  echo
  echo "Medians of $RUNS run(s) per engine (and per shape), alternating; parallelism 2; ratios are"
  echo "mesoflow / Flink. Shape: mesoflow executors x slots per executor (Flink: one MiniCluster JVM)."
  if (( ${#SHAPE_ROWS[@]} > 0 )); then
    echo
    echo "| workload | records per CPU-s (1x2 / 2x1) | ratio 2x1 / 1x2 | records/s (1x2 / 2x1) | ratio 2x1 / 1x2 | Flink p=2 records per CPU-s | ratio 2x1 / Flink | targets for 2x1 |"
    echo "|---|---|---|---|---|---|---|---|"
    printf '%s\n' "${SHAPE_ROWS[@]}"
  fi
} | tee "${OUT:-/dev/null}"

# A row whose engines disagree (or that failed) makes the whole run fail, so CI notices.
if (( INVALID_ROWS > 0 )); then
  echo "error: $INVALID_ROWS row(s) INVALID: the engines' (or mesoflow's shapes') results differ or a run failed" >&2
  exit 1
fi
