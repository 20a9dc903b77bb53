#!/usr/bin/env bash
# Takes docs/natter-client.png: a real natter-client window under Xvfb, talking to a real
# natter-server with a few scripted users. Needs the Debian packages xvfb, xdotool,
# imagemagick and libgl1-mesa-dri (software OpenGL), and python3 for the scripted users; for
# the line in several scripts, fonts for them (fonts-noto-cjk, fonts-noto-core), and
# fonts-noto-color-emoji for its emoji in colour.
#
#   scripts/client-screenshot.sh [OUT.png]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-docs/natter-client.png}
target=${CARGO_TARGET_DIR:-target}
cargo build -p natter-client -p natter-server
port=18090
display=:97
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

Xvfb "$display" -screen 0 1100x720x24 -nolisten tcp >"$work/xvfb.log" 2>&1 &
pids+=($!)
"$target/debug/natter-server" --store memory 127.0.0.1 "$port" >"$work/server.log" 2>&1 &
pids+=($!)
sleep 1

# The other people in the chat, each a plain socket speaking the protocol.
python3 - "$port" >"$work/bots.log" 2>&1 <<'PY' &
import socket, sys, time
port = int(sys.argv[1])
def user(name):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(f"\nREGISTER {name}\n".encode())
    return s
def say(s, line, wait=0.4):
    s.sendall((line + "\n").encode())
    time.sleep(wait)
bob, carol, dave, erin = user("bob"), user("carol"), user("dave"), user("erin")
say(carol, "MULTILINE ON")
say(bob, "JOIN #rust")
say(bob, "TOPIC #rust Rust, crabs and the borrow checker")
say(carol, "JOIN #rust")
say(dave, "JOIN #rust")
say(erin, "JOIN #rust")
time.sleep(6)  # alice signs in and joins #rust
say(bob, "MODE #rust +o alice", 0.5)
say(bob, "SAY #rust morning all! anyone tried the new egui release?", 0.8)
say(carol, "SAY #rust yes: the kittest harness drives a whole app through its accessibility tree, no GPU needed", 0.8)
time.sleep(2.5)  # alice answers
say(bob, "SAY #rust /me nods approvingly", 0.8)
say(erin, "SAY #rust alice: and its AccessKit labels make it work with a screen reader too", 0.8)
# Scripts the bundled fonts lack come from the system's fonts (fontconfig).
say(dave, "SAY #rust fonts check: 你好，世界 · こんにちは · 안녕하세요 · مرحبا · שלום · 🎉👍", 0.8)
say(dave, "MESSAGE lunch at one, anyone?", 0.5)
say(carol, "DM alice psst, are you coming to the meetup tonight?", 0.5)
# A message of several lines, with code (MULTILINE writes its line breaks as \n).
say(carol, "SAY #rust the fix was one line:\\n```\\nlet total: u32 = items.iter().map(|i| i.len).sum();\\n```\\nno more clones", 0.8)
# Someone typing when the picture is taken: said again every 3 s, as clients do.
for _ in range(20):
    say(erin, "TYPING #rust active", 3)
PY
pids+=($!)
sleep 1

DISPLAY=$display "$target/debug/natter-client" 127.0.0.1 "$port" >"$work/client.log" 2>&1 &
pids+=($!)
key() { DISPLAY=$display xdotool "$@"; }
# The window, once it is up (a loaded machine may take a while), then time to connect.
wid=
for _ in $(seq 100); do
  wid=$(key search --name '^natter' 2>/dev/null | head -1) && [ -n "$wid" ] && break
  sleep 0.2
done
sleep 3
# There is no window manager: give the window the keyboard by hand.
key windowfocus --sync "$wid"
key type --delay 40 "alice"
key key Return
sleep 1.5
key type --delay 20 "/join #rust"
key key Return
sleep 5
key type --delay 15 "it's what this client's tests use; they even restart the server under it"
key key Return
sleep 7
DISPLAY=$display import -window "$wid" "$out"
echo "wrote $out"
