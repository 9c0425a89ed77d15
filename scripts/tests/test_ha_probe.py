"""scripts/lib/ha_probe.py, the client side of scripts/ha-bench.sh, against a UDP echo on
loopback: it records one time per answer, stops on SIGTERM with its counts, and records
nothing while the service is gone."""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

from tests import LIB


class Echo:
    """Answers every datagram on 127.0.0.1 until stopped; `pause` makes it read but not answer."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self.pause = threading.Event()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while not self.stop.is_set():
            try:
                data, src = self.sock.recvfrom(2048)
            except socket.timeout:
                continue
            if not self.pause.is_set():
                self.sock.sendto(b"rs1\n", src)

    def close(self):
        self.stop.set()
        self.thread.join()
        self.sock.close()


class HaProbeTest(unittest.TestCase):
    def test_answers_are_timed_and_a_silence_shows_as_a_gap(self):
        echo = Echo()
        self.addCleanup(echo.close)
        with tempfile.TemporaryDirectory() as d:
            out = os.path.join(d, "replies")
            p = subprocess.Popen([sys.executable, os.path.join(LIB, "ha_probe.py"), "--dst",
                                  "127.0.0.1:%d" % echo.port, "--interval", "0.01", "--out", out],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            time.sleep(0.5)
            echo.pause.set()
            paused = time.time()
            time.sleep(0.5)
            echo.pause.clear()
            resumed = time.time()
            time.sleep(0.5)
            p.send_signal(signal.SIGTERM)
            stdout, stderr = p.communicate(timeout=10)
            self.assertEqual(p.returncode, 0, stderr)
            with open(out) as f:
                times = [float(line) for line in f]
        counts = dict(kv.split("=") for kv in stdout.split())
        self.assertEqual(int(counts["answered"]), len(times))
        # Loose counts: on a loaded machine the probe gets little CPU time.
        self.assertGreater(int(counts["sent"]), 20)
        self.assertEqual(times, sorted(times))
        # Answers before and after the silence, none inside it (but one in flight at its start).
        self.assertGreater(len([t for t in times if t < paused]), 5)
        self.assertGreater(len([t for t in times if t > resumed]), 5)
        self.assertLessEqual(len([t for t in times if paused + 0.05 < t < resumed]), 0)
        gap = max(b - a for a, b in zip(times, times[1:]))
        self.assertGreater(gap, 0.4)

    def test_a_bad_destination_is_refused(self):
        r = subprocess.run([sys.executable, os.path.join(LIB, "ha_probe.py"), "--dst", "nowhere",
                            "--out", "/dev/null"], capture_output=True, text=True, timeout=10)
        self.assertEqual(r.returncode, 2)
        self.assertIn("ADDR:PORT", r.stderr)


if __name__ == "__main__":
    unittest.main()
