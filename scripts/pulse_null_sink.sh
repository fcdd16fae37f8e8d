#!/usr/bin/env bash
# A microphone without hardware: a private PulseAudio daemon with a null sink `virt` whose monitor is
# the default source, so `paplay file.wav` is heard by anything recording from the default device
# (docs/ENVIRONMENT.md in ../shared). Used by tests/test_live.py and for trying `kws listen` by hand.
#
#   scripts/pulse_null_sink.sh start [STATE_DIR]   prints `export XDG_RUNTIME_DIR=... PULSE_SERVER=...`
#   scripts/pulse_null_sink.sh stop  [STATE_DIR]   kills exactly the processes `start` launched
#
#   eval "$(scripts/pulse_null_sink.sh start)"; paplay some.wav & kws listen marvin.kws --duration 5
#
# STATE_DIR (default /tmp/kws-pulse-$UID) holds the PIDs, the runtime dir and an env file.
set -euo pipefail

cmd=${1:-}
state=${2:-${KWS_PULSE_STATE:-/tmp/kws-pulse-$(id -u)}}

die() { echo "pulse_null_sink: $*" >&2; exit 1; }

start() {
  for b in pulseaudio pactl parec; do
    command -v "$b" >/dev/null 2>&1 || die "'$b' not found; install it: apt-get install -y pulseaudio pulseaudio-utils libportaudio2 libasound2-plugins (make apt does)"
  done
  if [ -f "$state/env" ] && [ -f "$state/pulseaudio.pid" ] && kill -0 "$(cat "$state/pulseaudio.pid")" 2>/dev/null; then
    cat "$state/env"   # already running: reuse it
    return 0
  fi
  mkdir -p "$state"
  runtime=$(mktemp -d "${TMPDIR:-/tmp}/kws-pulse-run.XXXXXX")
  chmod 700 "$runtime"
  export XDG_RUNTIME_DIR=$runtime
  # a private HOME-independent config dir so this daemon never touches a user's pulse settings
  export PULSE_CONFIG_PATH=$runtime/config PULSE_STATE_PATH=$runtime/state
  mkdir -p "$PULSE_CONFIG_PATH" "$PULSE_STATE_PATH"
  # In the foreground of a background job (not -D) so $! is the daemon's own PID to stop later.
  pulseaudio -n --daemonize=no --exit-idle-time=-1 --disallow-exit --use-pid-file=no \
    --load=module-native-protocol-unix --load="module-null-sink sink_name=virt" \
    >"$state/pulseaudio.log" 2>&1 &
  echo $! >"$state/pulseaudio.pid"
  echo "$runtime" >"$state/runtime_dir"
  export PULSE_SERVER=unix:$runtime/pulse/native
  for _ in $(seq 100); do
    pactl info >/dev/null 2>&1 && break
    kill -0 "$(cat "$state/pulseaudio.pid")" 2>/dev/null || { cat "$state/pulseaudio.log" >&2; die "pulseaudio exited"; }
    sleep 0.1
  done
  pactl info >/dev/null 2>&1 || die "pulseaudio did not come up in 10 s (log: $state/pulseaudio.log)"
  pactl set-default-sink virt
  pactl set-default-source virt.monitor
  # The keep-alive reader is essential: without a running capture, every new recording stream
  # gets no data for its first 1.4-2 s.
  parec --latency-msec=10 --raw >/dev/null 2>&1 &
  echo $! >"$state/parec.pid"
  sleep 1
  printf 'export XDG_RUNTIME_DIR=%s PULSE_SERVER=%s\n' "$runtime" "$PULSE_SERVER" | tee "$state/env"
}

stop() {
  [ -d "$state" ] || return 0
  for name in parec pulseaudio; do
    f=$state/$name.pid
    [ -f "$f" ] || continue
    pid=$(cat "$f")
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$f"
  done
  if [ -f "$state/runtime_dir" ]; then
    rm -rf "$(cat "$state/runtime_dir")"
  fi
  rm -f "$state/env" "$state/runtime_dir" "$state/pulseaudio.log"
  rmdir "$state" 2>/dev/null || true
}

case "$cmd" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop [STATE_DIR]" >&2; exit 2 ;;
esac
