#!/usr/bin/env python3
"""UDP probe for scripts/ha-bench.sh: the client side of a takeover-time measurement.

  ha_probe.py --dst ADDR:PORT --interval SECONDS --out FILE

Sends a datagram to ADDR:PORT every INTERVAL seconds from one socket (one connection for the
director, rescheduled by whichever director holds the VIP) and appends the wall-clock time
(seconds since the epoch, CLOCK_REALTIME, so that the shell can compare it with `date +%s.%N`)
of every answer from ADDR:PORT to FILE, one a line, flushed at once. Runs until SIGTERM or
SIGINT; then prints "sent=N answered=M" on stdout.
"""

import argparse
import select
import signal
import socket
import sys
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dst", required=True, help="ADDR:PORT")
    ap.add_argument("--interval", type=float, default=0.01)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    host, _, port = args.dst.rpartition(":")
    if not host or not port.isdigit():
        ap.error(f"--dst must be ADDR:PORT, not {args.dst!r}")
    if not 0.001 <= args.interval <= 10:
        ap.error("--interval must be 0.001..10 seconds")
    dst = (host, int(port))

    running = True

    def stop(_sig, _frame):
        nonlocal running
        running = False

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sent = answered = 0
    next_send = time.monotonic()
    with open(args.out, "a", buffering=1) as out:
        while running:
            now = time.monotonic()
            if now >= next_send:
                try:
                    sock.sendto(b"probe\n", dst)
                except OSError:
                    pass  # no neighbour yet, or the link is down: the probe goes on
                sent += 1
                next_send += args.interval
                if next_send < now:  # fell behind (a stall): no burst to catch up
                    next_send = now + args.interval
            try:
                ready, _, _ = select.select([sock], [], [], max(0.0, next_send - time.monotonic()))
            except InterruptedError:
                continue
            if not ready:
                continue
            while True:
                try:
                    _, src = sock.recvfrom(2048)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    break  # an ICMP error reported on the socket: not an answer
                if src == dst:
                    answered += 1
                    out.write(f"{time.time():.6f}\n")
    print(f"sent={sent} answered={answered}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
