"""The shell helpers of scripts/lib (common.sh, bench.sh), run through bash, and every entry
point's -h / --help: each must find its helpers under scripts/lib and parse its arguments
without doing anything else."""

import os
import subprocess
import tempfile
import unittest

from tests import LIB

try:
    import tomllib
except ImportError:  # Python < 3.11
    tomllib = None

SCRIPTS = os.path.dirname(LIB)
ROOT = os.path.dirname(SCRIPTS)


def bash(script, *args):
    """Runs `script` in bash with lib/common.sh and lib/bench.sh sourced; returns stdout."""
    src = '. "$1/common.sh"; . "$1/bench.sh"; shift; ' + script
    env = {k: v for k, v in os.environ.items() if k not in ("RVS_ROOT", "RVS_PROG")}
    r = subprocess.run(["bash", "-c", src, "test", LIB] + list(args), capture_output=True, text=True, env=env)
    if r.returncode != 0:
        raise AssertionError("bash failed (%d): %s" % (r.returncode, r.stderr))
    return r.stdout


class CommonTest(unittest.TestCase):
    def test_paths(self):
        self.assertEqual(bash('echo "$RVS_ROOT"; echo "$RVS_LIB"').splitlines(), [ROOT, LIB])


class BenchHelpersTest(unittest.TestCase):
    def test_count(self):
        self.assertEqual(bash('for a in 10M 2k 1K 7; do count "$a"; done').split(), ["10000000", "2000", "1000", "7"])

    def test_quote_quotes_only_what_the_shell_needs(self):
        self.assertEqual(bash('quote "$@"', "rvsd", "--config", "/tmp/a b.toml", "--x=1,2", "*", ""),
                         "rvsd --config '/tmp/a b.toml' --x=1,2 '*' ''")

    def test_bench_option_takes_the_options_both_benchmarks_share(self):
        parse = ('BUILD=1; while [ $# -gt 0 ]; do bench_option "$@"; shift "$OPT_WORDS"; done; '
                 'echo "$OUT|$BUILD|$FLOWS|$WARMUP|$DURATION|$ONLY"')
        self.assertEqual(bash(parse, "--out", "/tmp/R.md", "--flows", "1K 10M", "--no-build", "--warmup", "1",
                              "--duration", "3", "--only", "udp-*").strip(), "/tmp/R.md||1K 10M|1|3|udp-*")
        with self.assertRaises(AssertionError) as e:
            bash(parse, "--flows", "1K", "--rate", "5")
        self.assertIn("unknown argument: --rate", str(e.exception))

    def test_bench_commit_is_rvs_bench_commit_when_set(self):
        self.assertEqual(bash('RVS_BENCH_COMMIT="abc (export)" bench_commit'), "abc (export)\n")

    def test_bench_commit_is_taken_when_the_benchmark_starts(self):
        # A tree edited after the benchmark started (while it runs) is not what it measured.
        with tempfile.TemporaryDirectory() as repo:
            # No GIT_DIR and the like from a hook or a caller: every git here is the scratch repo's.
            env = {k: v for k, v in os.environ.items()
                   if k != "RVS_BENCH_COMMIT" and not k.startswith("GIT_")}
            git = ["git", "-C", repo, "-c", "user.name=t", "-c", "user.email=t@example.com",
                   "-c", "commit.gpgsign=false"]
            subprocess.run(["git", "init", "-q", repo], check=True, env=env)
            subprocess.run(git + ["commit", "-q", "--allow-empty", "-m", "x"], check=True, env=env)
            head = subprocess.run(git + ["rev-parse", "--short", "HEAD"], check=True,
                                  capture_output=True, text=True, env=env).stdout
            env["RVS_ROOT"] = repo
            script = ('. "$1/common.sh"; . "$1/bench.sh"; touch "$RVS_ROOT/edit"; '
                      'echo "$(bench_commit)|$(RVS_BENCH_COMMIT= bench_commit)"')
            r = subprocess.run(["bash", "-c", script, "test", LIB], capture_output=True, text=True,
                               env=env, check=True)
            self.assertEqual(r.stdout, "%s|%s (with uncommitted changes)\n" % (head.strip(), head.strip()))

    def test_need_tools_names_the_missing_one(self):
        bash("need_tools bash sed")
        with self.assertRaises(AssertionError) as e:
            bash("need_tools bash no-such-tool-rvs")
        self.assertIn("missing no-such-tool-rvs (run scripts/setup.sh)", str(e.exception))

    def test_bench_services(self):
        self.assertEqual(bash("bench_services udp tcp").splitlines(), [
            "-A -u 198.51.100.1:9000 -s rr",
            "-a -u 198.51.100.1:9000 -r 192.0.2.2:9000 -m -w 1",
            "-a -u 198.51.100.1:9000 -r 192.0.2.3:9000 -m -w 1",
            "-a -u 198.51.100.1:9000 -r 192.0.2.4:9000 -m -w 1",
            "-a -u 198.51.100.1:9000 -r 192.0.2.5:9000 -m -w 1",
            "-A -t 198.51.100.1:80 -s rr",
            "-a -t 198.51.100.1:80 -r 192.0.2.2:80 -m -w 1",
            "-a -t 198.51.100.1:80 -r 192.0.2.3:80 -m -w 1",
            "-a -t 198.51.100.1:80 -r 192.0.2.4:80 -m -w 1",
            "-a -t 198.51.100.1:80 -r 192.0.2.5:80 -m -w 1"])

    @unittest.skipIf(tomllib is None, "tomllib needs Python 3.11")
    def test_write_rvsd_config_is_the_toml_rvsd_reads(self):
        text = bash('f=$(mktemp); write_rvsd_config "$f" /run/x.sock 1000 0 "$(bench_services udp)" "$@"; '
                    'cat "$f"; rm -f "$f"',
                    "--vdev=net_memif0,role=client,id=0", "--vdev=net_memif1,role=client,id=0")
        c = tomllib.loads(text)
        self.assertEqual(c["services"].strip().splitlines()[0], "-A -u 198.51.100.1:9000 -s rr")
        self.assertEqual(c["eal"]["args"], ["-l", "0", "--in-memory", "--no-pci", "--vdev=net_memif0,role=client,id=0",
                                            "--vdev=net_memif1,role=client,id=0"])
        self.assertEqual([(p["name"], p["device"], p["role"], p["addresses"]) for p in c["ports"]], [
            ("ext", "net_memif0", "external", ["198.51.100.1/24"]),
            ("int", "net_memif1", "internal", ["192.0.2.1/24"])])
        self.assertEqual((c["workers"]["lcores"], c["conntrack"]["capacity"], c["control"]["socket"]),
                         ([0], 1000, "/run/x.sock"))

    def test_bench_services_ipv6(self):
        self.assertEqual(bash("bench_services tcp6").splitlines(), [
            "-A -t [2001:db8:100::1]:80 -s rr",
            "-a -t [2001:db8:100::1]:80 -r [2001:db8:2::2]:80 -m -w 1",
            "-a -t [2001:db8:100::1]:80 -r [2001:db8:2::3]:80 -m -w 1",
            "-a -t [2001:db8:100::1]:80 -r [2001:db8:2::4]:80 -m -w 1",
            "-a -t [2001:db8:100::1]:80 -r [2001:db8:2::5]:80 -m -w 1"])

    @unittest.skipIf(tomllib is None, "tomllib needs Python 3.11")
    def test_write_rvsd_config_with_ipv6(self):
        text = bash('f=$(mktemp); BENCH_IPV6=1 write_rvsd_config "$f" /run/x.sock 1000 0 "$(bench_services udp6)" "$@"; '
                    'cat "$f"; rm -f "$f"', "--vdev=net_memif0", "--vdev=net_memif1")
        c = tomllib.loads(text)
        self.assertEqual(c["services"].strip().splitlines()[0], "-A -u [2001:db8:100::1]:9000 -s rr")
        self.assertEqual([(p["addresses"], p["addresses6"]) for p in c["ports"]], [
            (["198.51.100.1/24"], ["2001:db8:100::1/64"]), (["192.0.2.1/24"], ["2001:db8:2::1/64"])])
        text = bash('f=$(mktemp); write_rvsd_config "$f" /run/x.sock 1000 0 "" "$@"; cat "$f"; rm -f "$f"',
                    "--vdev=net_memif0", "--vdev=net_memif1")
        self.assertFalse(any("addresses6" in p for p in tomllib.loads(text)["ports"]))

    @unittest.skipIf(tomllib is None, "tomllib needs Python 3.11")
    def test_write_rvsd_config_takes_more_eal_args(self):
        text = bash('f=$(mktemp); write_rvsd_config "$f" /run/x.sock 1000 0 "" "$@"; cat "$f"; rm -f "$f"',
                    "--vdev=net_memif0", "--vdev=net_memif1", "--vdev=net_memif2,id=0")
        self.assertEqual(tomllib.loads(text)["eal"]["args"][-3:],
                         ["--vdev=net_memif0", "--vdev=net_memif1", "--vdev=net_memif2,id=0"])


class EntryPointsTest(unittest.TestCase):
    # Each prints its usage and exits 0 before it needs root or touches anything.
    HELP = ("bench.sh", "kernel-bench.sh", "pipeline-bench.sh", "lab.sh", "setup.sh", "demo.sh", "test.sh",
            "soak.sh", "synflood.sh", "fuzz.sh", "bench-plot.py", "lab-fragments-check.sh",
            "testpmd-bench.sh", "package-check.sh", "ha-bench.sh", "scaling-bench.sh", "conn-bench.sh",
            "pipeline-compare.py")

    def run_script(self, name, *args):
        return subprocess.run([os.path.join(SCRIPTS, name)] + list(args), capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=60)

    def test_help(self):
        for name in self.HELP:
            for opt in ("-h", "--help"):
                with self.subTest(script=name, opt=opt):
                    r = self.run_script(name, opt)
                    self.assertEqual(r.returncode, 0, r.stderr)
                    self.assertEqual(r.stderr, "")
                    self.assertGreater(len(r.stdout.splitlines()), 2)
                    self.assertNotIn("#", r.stdout.splitlines()[0])

    def test_every_entry_point_is_covered(self):
        entry = sorted(f for f in os.listdir(SCRIPTS) if os.path.isfile(os.path.join(SCRIPTS, f)))
        self.assertEqual(entry, sorted(self.HELP))

    def test_unknown_arguments_are_refused(self):
        for name in ("bench.sh", "kernel-bench.sh", "pipeline-bench.sh", "ha-bench.sh", "scaling-bench.sh",
                     "conn-bench.sh"):
            with self.subTest(script=name):
                r = self.run_script(name, "--no-such-option")
                self.assertEqual(r.returncode, 1)
                self.assertIn("--no-such-option", r.stderr)

    def test_fuzz_list_and_usage(self):
        r = self.run_script("fuzz.sh", "list")
        self.assertEqual((r.returncode, r.stdout.split()), (0, ["pipeline", "packet", "sync"]))
        r = self.run_script("fuzz.sh")
        self.assertEqual(r.returncode, 2)
        self.assertIn("scripts/fuzz.sh smoke", r.stderr)


if __name__ == "__main__":
    unittest.main()
