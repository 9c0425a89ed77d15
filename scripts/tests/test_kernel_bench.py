"""kernel_bench: scripts/kernel-bench.sh's CPU sampler, point records and report."""

import json
import os
import tempfile
import unittest

from tests import run_report  # (and scripts/lib on sys.path)
import kernel_bench as kb

META = {"date": "2026-01-02 03:04 UTC", "nproc": "2", "cpu": "Test CPU", "kernel": "6.1.0",
        "dpdk": "22.11.4", "commit": "abc1234", "binaries": "rvsd then, rvs-pktgen then",
        "command": "scripts/kernel-bench.sh", "elapsed": "45", "load": "0.1 0.2 0.3",
        "end_load": "0.4 0.5 0.6", "flows": "1K", "warmup": "1", "duration": "4",
        "rate_n": "100000", "gen_cpu": "1", "dut_cpu": "0", "nice": "-20"}

STAT = """cpu  100 0 50 1000 0 0 10 0 0 0
cpu0 60 0 30 500 0 0 5 0 0 0
cpu1 40 0 20 500 0 0 5 0 0 0
intr 12345
"""


def cpu(usr, sys_, softirq, idle):
    return {"usr": usr, "sys": sys_, "softirq": softirq, "idle": idle, "steal": 0.0}


def pg(offered, delivered, loss, **extra):
    p = {"offered_mpps": offered, "delivered_mpps": delivered, "loss_pct": loss, "mismatches": 0,
         "server_mismatches": 0, "latency_us": {"p50": 100.0, "p99": 900.0}}
    p.update(extra)
    return p


def point(name, mode, rate, p, cpus=None, **kv):
    r = {"point": name, "mode": mode, "rate": rate, "load": "1 1 1", "busy_before": 0, "error": "",
         "dut_error": "", "pktgen": p, "pktgen_cmd": "rvs-pktgen " + name}
    if cpus is not None:
        r["cpu"] = {"cpus": cpus, "other_procs_pct": 0.0, "softnet_dropped": 0}
    r.update(kv)
    return r


class SamplerTest(unittest.TestCase):
    def test_cpu_times_per_cpu_only(self):
        self.assertEqual(kb.cpu_times(STAT), {"cpu0": [60, 0, 30, 500, 0, 0, 5, 0], "cpu1": [40, 0, 20, 500, 0, 0, 5, 0]})

    def test_proc_ticks_takes_the_name_between_the_outer_parentheses(self):
        fields = " ".join(str(i) for i in range(3, 20))  # state is field 3; utime 14, stime 15
        self.assertEqual(kb.proc_ticks("42 (a (b) c) " + fields), ["a (b) c", 14 + 15])
        with self.assertRaises(ValueError):
            kb.proc_ticks("42 no parentheses")

    def test_softnet_dropped_sums_the_hex_second_column(self):
        self.assertEqual(kb.softnet_dropped("0000abcd 0000000a 00000000\n00000001 00000010 00000000\n\n"), 10 + 16)

    def test_snap_of_a_proc_tree(self):
        with tempfile.TemporaryDirectory() as d:
            os.makedirs(os.path.join(d, "net"))
            os.makedirs(os.path.join(d, "7"))
            os.makedirs(os.path.join(d, "8"))  # gone: no stat file
            os.makedirs(os.path.join(d, "self"))
            for path, text in (("stat", STAT), ("net/softnet_stat", "00000001 00000002 0\n"),
                               ("7/stat", "7 (rvsd) R " + " ".join(["0"] * 10) + " 5 6 0 0\n")):
                with open(os.path.join(d, path), "w") as f:
                    f.write(text)
            kb.snap(os.path.join(d, "out.json"), proc=d)
            with open(os.path.join(d, "out.json")) as f:
                s = json.load(f)
        self.assertEqual(sorted(s), ["cpu", "proc", "softnet_dropped", "t"])
        self.assertEqual(s["proc"], {"7": ["rvsd", 11]})
        self.assertEqual(s["softnet_dropped"], 2)
        self.assertEqual(sorted(s["cpu"]), ["cpu0", "cpu1"])

    def test_cpu_usage(self):
        a = {"t": 10.0, "cpu": {"cpu0": [0] * 8}, "softnet_dropped": 5,
             "proc": {"1": ["rvsd", 100], "2": ["make", 0], "3": ["ksoftirqd/0", 0], "4": ["idle", 7],
                      "6": ["rvs-pktgen", 5]}}
        # 200 ticks on cpu0: 50 user + 10 nice, 40 system, 60 idle + 20 iowait, 10 irq + 10 softirq.
        b = {"t": 12.0, "cpu": {"cpu0": [50, 10, 40, 60, 20, 10, 10, 0]}, "softnet_dropped": 9,
             "proc": {"1": ["rvsd", 300], "2": ["make", 20], "3": ["ksoftirqd/0", 2], "4": ["idle", 7],
                      "5": ["new", 50], "6": ["rvs-pktgen", 5]}}
        u = kb.cpu_usage(a, b, hz=100)
        self.assertEqual(u["cpus"], {"cpu0": {"usr": 30.0, "sys": 20.0, "softirq": 10.0, "idle": 40.0, "steal": 0.0}})
        self.assertEqual(u["sample_s"], 2.0)
        # 200 ticks in 2 s at 100 Hz: a whole CPU. A process that used none is left out.
        self.assertEqual(u["procs"], {"rvsd": 100.0, "ksoftirqd/0": 1.0})
        # "new", first seen in b, is not counted: its ticks before a are unknown.
        self.assertEqual(u["other_procs_pct"], 10.0)
        self.assertEqual(u["other_top"], [(10.0, "make")])
        self.assertEqual(u["softnet_dropped"], 4)


class RecordTest(unittest.TestCase):
    IP = json.dumps([{"ifname": "lo", "stats64": {"rx": {"packets": 1}, "tx": {"packets": 1}}},
                     {"ifname": "g-ext", "stats64": {"rx": {"packets": 10, "dropped": 1}, "tx": {"packets": 20}}}])

    def test_iface_counters(self):
        text = self.IP + "\n\nnot json\n" + json.dumps([{"ifname": "d-ext"}]) + "\n"
        self.assertEqual(kb.iface_counters(text), {
            "lo": {"rx": 1, "rx_dropped": 0, "tx": 1, "tx_dropped": 0},
            "g-ext": {"rx": 10, "rx_dropped": 1, "tx": 20, "tx_dropped": 0},
            "d-ext": {"rx": 0, "rx_dropped": 0, "tx": 0, "tx_dropped": 0}})
        self.assertEqual(kb.iface_counters(None), {})

    def test_iface_delta(self):
        f0 = {"lo": {"rx": 1}, "a": {"rx": 5, "tx": 1}}
        f1 = {"lo": {"rx": 9}, "a": {"rx": 8, "tx": 1}, "b": {"rx": 2, "tx": 3}}
        self.assertEqual(kb.iface_delta(f0, f1), {"a": {"rx": 3, "tx": 0}, "b": {"rx": 2, "tx": 3}})

    def fields(self):
        return {"mode": "rvs", "rate": "0", "load": "1 2 3", "busy_before": "7", "error": "", "dut_error": "late",
                "pktgen_rc": "0", "pktgen_cmd": "a 'b c'", "dut_cmd": ""}

    def test_point_record_from_the_work_folder(self):
        with tempfile.TemporaryDirectory() as d:
            def put(suffix, text):
                with open(os.path.join(d, "p1" + suffix), "w") as f:
                    f.write(text)
            put(".pktgen.json", 'progress\n' + json.dumps(pg(0.1, 0.09, 1.5)) + "\n")
            put(".cmds", "ip netns add x\n")
            put(".counters", "port.ext.rx_packets 5\n")
            snap = {"t": 0.0, "cpu": {"cpu0": [0] * 8}, "proc": {}, "softnet_dropped": 0}
            put(".snap0.json", json.dumps(snap))
            put(".snap1.json", json.dumps(dict(snap, t=1.0, cpu={"cpu0": [1, 0, 0, 1, 0, 0, 0, 0]})))
            put(".if0.json", self.IP + "\n")
            put(".if1.json", self.IP.replace('"packets": 20', '"packets": 25') + "\n")
            r = kb.point_record(d, "p1", self.fields(), hz=100)
        self.assertEqual(list(r)[:10], ["point", "mode", "rate", "load", "busy_before", "error", "dut_error",
                                        "pktgen_rc", "pktgen_cmd", "dut_cmd"])
        self.assertEqual(r["busy_before"], 7)
        self.assertEqual(r["pktgen"]["delivered_mpps"], 0.09)
        self.assertEqual(r["setup"], "ip netns add x\n")
        self.assertEqual(kb.counters(r), {"port.ext.rx_packets": 5})
        self.assertEqual(r["cpu"]["cpus"]["cpu0"]["usr"], 50.0)
        self.assertEqual(r["ifaces"]["g-ext"]["tx"], 5)
        self.assertEqual(kb.point_summary(r),
                         '  p1: offered 100000/s, delivered 90000/s, loss 1.500 %, mismatches 0, cpu '
                         '{"cpu0": {"usr": 50.0, "sys": 0.0, "softirq": 0.0, "idle": 50.0, "steal": 0.0}}')

    def test_point_record_of_a_point_that_left_nothing(self):
        with tempfile.TemporaryDirectory() as d:
            r = kb.point_record(d, "p2", dict(self.fields(), error="rvsd did not start"), hz=100)
        self.assertEqual((r["pktgen"], r["setup"], r["rvsd_counters"], r["ifaces"]), (None, None, None, {}))
        self.assertNotIn("cpu", r)
        self.assertEqual(kb.point_summary(r), "  p2: FAILED:  rvsd did not start late")

    def test_point_record_needs_every_field(self):
        fields = self.fields()
        del fields["dut_cmd"]
        with self.assertRaises(KeyError):
            kb.point_record("/nonexistent", "p", fields, hz=100)


class LimitTest(unittest.TestCase):
    def test_counters_skip_what_is_not_a_counter(self):
        r = {"rvsd_counters": "a 1\nb x\nc 2 3\nport.ext.rx_packets 40\n"}
        self.assertEqual(kb.counters(r), {"a": 1, "port.ext.rx_packets": 40})
        self.assertEqual(kb.counters({}), {})

    def test_ring_drops(self):
        r = {"rvsd_counters": "port.ext.rx_packets 40\n", "ifaces": {"d-ext": {"rx": 100}}}
        self.assertEqual(kb.ring_drops(r), 60)
        self.assertIsNone(kb.ring_drops({"ifaces": {"d-ext": {"rx": 100}}}))
        self.assertIsNone(kb.ring_drops({"rvsd_counters": "port.ext.rx_packets 40\n"}))

    def test_fixed_rate_points(self):
        self.assertEqual(kb.limit(point("k", "kernel", "100K", pg(0.1, 0.1, 0.0)), META), "takes the offered rate")
        self.assertEqual(kb.limit(point("k", "kernel", "100K", pg(0.05, 0.05, 0.0)), META),
                         "generator could not offer the rate")
        self.assertEqual(kb.limit(point("k", "kernel-rps", "100K", pg(0.1, 0.09, 5.0)), META), "drops at this rate")
        r = point("k", "kernel", "100K", pg(0.1, 0.1, 0.0), {"cpu1": cpu(10, 15, 10, 65)})
        self.assertEqual(kb.limit(r, META),
                         "takes the offered rate; the kernel forwards in softirq on CPU 1 (the generator's)")

    def test_rvs_director_bound(self):
        r = point("rvs-max", "rvs", "0", pg(0.5, 0.45, 10.0), {"cpu0": cpu(40, 20, 40, 0), "cpu1": cpu(50, 25, 25, 0)},
                  rvsd_counters="port.ext.rx_packets 1000\n", ifaces={"d-ext": {"rx": 3500}})
        self.assertEqual(kb.limit(r, META),
                         "director-bound: rvsd delivered 90 % of what was offered; its af_packet RX ring dropped "
                         "2,500 frames; CPU 0: 40 % usr (rvsd), 60 % sys + softirq (af_packet transmit: veth, "
                         "delivery into rvs-pktgen's ring); CPU 1 saturated too (rvs-pktgen; 50 % sys + softirq), "
                         "so offered is the generator's ceiling")

    def test_rvs_generator_bound_and_unknown(self):
        r = point("rvs-max", "rvs", "0", pg(0.5, 0.5, 0.0), {"cpu1": cpu(50, 48, 0, 2)})
        self.assertEqual(kb.limit(r, META), "generator-bound: CPU 1 98 % busy, no loss: rvsd took all that was offered")
        r = point("rvs-max", "rvs", "0", pg(0.5, 0.5, 0.0), {"cpu1": cpu(50, 0, 0, 50)}, busy_before=20)
        r["cpu"]["other_procs_pct"] = 12.0
        self.assertEqual(kb.limit(r, META), "no saturated CPU found; other work: 12 % of a CPU; machine 20 % busy before")

    def test_kernel_points(self):
        r = point("kernel-rps-max", "kernel-rps", "0", pg(0.3, 0.3, 0.0),
                  {"cpu0": cpu(0, 10, 88, 2), "cpu1": cpu(30, 30, 10, 30)})
        self.assertEqual(kb.limit(r, META).split("; ")[:2], [
            "director-bound: CPU 0 88 % in softirq (the kernel's forwarding)",
            "rvs-pktgen blocks in poll() on its full af_packet TX ring (CPU 1 30 % idle): the kernel takes "
            "frames from it only as its socket's send buffer drains, i.e. as CPU 0 forwards them"])
        r = point("kernel-max", "kernel", "0", pg(0.3, 0.3, 0.0), {"cpu0": cpu(0, 0, 0, 100), "cpu1": cpu(20, 30, 50, 0)})
        self.assertEqual(kb.limit(r, META),
                         "generator core saturated, shared: rvs-pktgen and, in softirq inside its sendto(), the "
                         "kernel's forwarding (80 % sys + softirq) on CPU 1; CPU 0 100 % idle")
        self.assertEqual(kb.limit(point("kernel-max", "kernel", "0", pg(0.3, 0.2, 30.0)), META),
                         "director-bound: 30.0 % lost")
        self.assertEqual(kb.limit(point("kernel-max", "kernel", "0", {"error": "x"}), META), "failed")

    def test_cpu_cell(self):
        self.assertEqual(kb.cpu_cell({"cpu": {"cpus": {"cpu0": cpu(1.4, 2.6, 3, 93)}}}, "cpu0"), "1 / 3 / 3 / 93")
        self.assertEqual(kb.cpu_cell({}, "cpu0"), "–")

    def test_losses(self):
        ifaces = {"g-ext": {"rx": 0, "tx": 1000}, "g-int": {"rx": 0, "tx": 900},
                  "d-ext": {"rx": 1000, "tx": 870}, "d-int": {"rx": 900, "tx": 900}}
        ps = {"ext": {"opackets": 1100}, "int": {"opackets": 900, "imissed": 3}}
        r = point("rvs-max", "rvs", "0", pg(0.1, 0.1, 0.0, port_stats=ps, total={"server_tx_drop": 2}),
                  ifaces=ifaces, rvsd_counters="port.ext.rx_packets 950\n")
        r["cpu"] = {"softnet_dropped": 1234}
        extra = kb.losses(r)
        self.assertTrue(extra[0].startswith("100 frames counted as sent by rvs-pktgen never reached the veth"))
        self.assertEqual(extra[1:], [
            "the director forwarded 100 fewer client frames than reached d-ext (50 of them dropped by its af_packet RX ring)",
            "the director forwarded 30 fewer replies than reached d-int",
            "rvs-pktgen's receive rings dropped 3 (imissed)",
            "2 reflected frames not taken by g-int",
            "1,234 frames dropped by the kernel's backlog queues (softnet_stat, during the CPU sample)"])
        clean = dict(ifaces, **{"d-ext": {"rx": 1000, "tx": 900}, "d-int": {"rx": 900, "tx": 1000}})
        r = point("kernel-max", "kernel", "0", pg(0.1, 0.1, 0.0, port_stats=ps), ifaces=clean)
        self.assertEqual(kb.losses(r)[1:], ["the director itself lost nothing (d-ext rx = d-int tx, d-int rx = d-ext tx)",
                                            "rvs-pktgen's receive rings dropped 3 (imissed)"])


class ReportTest(unittest.TestCase):
    RECS = [point("kernel-max", "kernel", "0", pg(0.4, 0.2, 0.1), {"cpu1": cpu(20, 30, 50, 0)},
                  setup="ip netns add a\nip netns add b\n"),
            point("kernel-rps-max", "kernel-rps", "0", pg(0.4, 0.25, 0.1), setup="ip netns add a\nip netns add b\nrps\n"),
            point("rvs-max", "rvs", "0", pg(0.5, 0.3, 0.1), dut_cmd="rvsd --config c",
                  rvsd_counters="port.ext.rx_packets 7\nzero 0\n", setup="ip netns add a\n"),
            point("rvs-100K", "rvs", "100K", None, error="rvsd did not start: a|b", dut_error="exit 1")]

    def test_report(self):
        L = kb.report(self.RECS, META, conf="[eal]\n")
        self.assertEqual(L[0], "## Kernel baseline: kernel director vs rvsd, same generator, same veths (kernel-bench)")
        self.assertIn("| kernel-max | kernel (nftables DNAT), softirq on the sender's CPU | 400,000 | **200,000** | 0.100 "
                      "| 100 / 900 | 0 | 20 / 30 / 50 / 0 | – | generator core saturated, shared: rvs-pktgen and, in "
                      "softirq inside its sendto(), the kernel's forwarding (80 % sys + softirq) on CPU 1; CPU 0 nan % idle |", L)
        self.assertIn("| rvs-100K | rvsd, 1 worker on lcore 0 | FAILED | | | | | | | rvsd did not start: a/b exit 1 |", L)
        text = "\n".join(L)
        self.assertIn("**rvs / kernel delivered round trips/s, each as fast as it takes them: 1.50** (300,000 vs 200,000;", text)
        self.assertIn("**rvs / kernel with RPS: 1.20** (300,000 vs 250,000;", text)
        self.assertIn("Failures:\n\n- rvs-100K: rvsd did not start: a|b exit 1", text)
        # kernel-rps's setup is given as what it adds to kernel's.
        self.assertIn("Setup for kernel-rps: as for kernel, then:\n\n```sh\nrps\n```", text)
        self.assertIn("Setup for rvs:\n\n```sh\nip netns add a\n```", text)
        self.assertIn("```toml\n[eal]\n```", text)
        self.assertIn("rvsd's counters (`rvsadm -L -n --counters`, the non-zero ones) at the end of rvs-max: "
                      "port.ext.rx_packets 7.", L)
        raw = [json.loads(l) for l in L[L.index("### Raw results"):] if l.startswith("{")]
        self.assertEqual([r["point"] for r in raw], [r["point"] for r in self.RECS])
        self.assertEqual(list(raw[0]), ["point", "mode", "rate", "load", "busy_before", "error", "dut_error", "cpu",
                                        "ifaces", "pktgen"])

    def test_no_ratio_without_both_points(self):
        L = kb.report(self.RECS[1:], META)
        self.assertFalse(any(l.startswith("**rvs / kernel delivered") for l in L))
        self.assertTrue(any(l.startswith("**rvs / kernel with RPS") for l in L))
        self.assertNotIn("```toml", L)

    def test_cli_report_and_console(self):
        text, stdout = run_report(kb.main, self.RECS, META)
        self.assertTrue(text.startswith("<!-- kernel-bench:begin -->\n## Kernel baseline"))
        self.assertTrue(text.endswith("<!-- kernel-bench:end -->\n"))
        self.assertIn("### What limits these figures", stdout)
        self.assertNotIn("### Commands", stdout)


if __name__ == "__main__":
    unittest.main()
