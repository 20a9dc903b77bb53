#!/usr/bin/env python3
"""Server RSS per idle connection, with and without registration.

Usage: bench/idle_rss.py SERVER_BINARY N [reg|noreg]

Starts the server on 127.0.0.1:18111 (flood control off, loopback exempt), opens N
connections that each send a blank line (and REGISTER uN with `reg`), reads everything the
server sends for four seconds, and prints the growth of the server's VmRSS divided by N.
Loopback only; bounded in count and time.
"""
import os
import selectors
import socket
import subprocess
import sys
import time

binary, n, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
port = 18111
server = subprocess.Popen(
    [binary, "127.0.0.1", str(port), "--flood-control", "false", "--exempt-loopback"],
    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "RUST_LOG": "warn"})
try:
    time.sleep(0.5)

    def rss():
        with open(f"/proc/{server.pid}/status") as f:
            return int(next(l for l in f if l.startswith("VmRSS")).split()[1])

    before = rss()
    sel = selectors.DefaultSelector()

    def drain(timeout):
        for key, _ in sel.select(timeout):
            try:
                key.fileobj.recv(1 << 20)
            except BlockingIOError:
                pass

    socks = []
    for i in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(f"\nREGISTER u{i}\n".encode() if mode == "reg" else b"\n")
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
        socks.append(s)
        if i % 200 == 0:
            drain(0)
    end = time.time() + float(os.environ.get("IDLE_WAIT", "4"))
    while time.time() < end:
        drain(0.2)
    after = rss()
    print(f"N={n} {mode}: RSS {before} KiB -> {after} KiB, "
          f"{(after - before) * 1024 / n:.0f} bytes per connection")
finally:
    server.terminate()
    server.wait()
