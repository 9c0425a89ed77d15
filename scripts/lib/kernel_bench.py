"""The CPU sampler, the records and the report of scripts/kernel-bench.sh, the kernel baseline
(the Linux kernel as LVS-NAT director against rvsd, both driven by rvs-pktgen over veths).

kernel-bench.sh calls it per point and once at the end:

    kernel_bench.py sample LOG PID SECS OUT0 OUT1
        wait until rvs-pktgen (PID) logs its first "measure" progress line to LOG, then 0.2 s,
        and snapshot per-CPU times, every process's CPU ticks and the kernel's backlog drops
        into OUT0; again SECS seconds later into OUT1, so the sample lies inside the
        measurement. Run it with rvs-pktgen's niceness, or it gets no CPU time while two
        processes busy-poll both CPUs.
    kernel_bench.py record RECORDS WORK NAME KEY=VALUE...
        append the record of point NAME, from the KEY=VALUE pairs of RECORD_FIELDS and the
        files the point left in WORK (NAME.pktgen.json, .cmds, .counters, .snap0/1.json,
        .if0/1.json); a one-line summary goes to stderr
    kernel_bench.py report RECORDS OUT CONF KEY=VALUE...
        write the kernel-bench section of OUT (with rvsd's configuration CONF when it exists)
        from the records and the KEY=VALUE pairs of REPORT_FIELDS; the figures on stdout
"""

import argparse
import json
import os
import sys
import time

import bench_records

# What kernel-bench.sh knows about a point when it records it.
RECORD_FIELDS = ("mode", "rate", "load", "busy_before", "error", "dut_error", "pktgen_rc",
                 "pktgen_cmd", "dut_cmd")
# What the report's header says about the run.
REPORT_FIELDS = ("date", "nproc", "cpu", "kernel", "dpdk", "commit", "binaries", "command",
                 "elapsed", "load", "end_load", "flows", "warmup", "duration", "rate_n", "gen_cpu",
                 "dut_cpu", "nice")


# ---------------------------------------------------------------------------------------------
# The sampler.

def cpu_times(stat):
    """Per-CPU times from the text of /proc/stat: {"cpu0": [user, nice, system, idle, iowait,
    irq, softirq, steal], ...} in clock ticks, without the all-CPU "cpu" line."""
    out = {}
    for l in stat.splitlines():
        f = l.split()
        if f and f[0].startswith("cpu") and f[0] != "cpu":
            out[f[0]] = [int(v) for v in f[1:9]]
    return out


def proc_ticks(stat):
    """[comm, utime + stime] from the text of /proc/PID/stat (the command name may hold spaces
    and parentheses). Raises ValueError on a malformed line."""
    rest = stat[stat.rindex(")") + 2:].split()
    return [stat[stat.index("(") + 1:stat.rindex(")")], int(rest[11]) + int(rest[12])]


def softnet_dropped(softnet_stat):
    """Frames the kernel's backlog queues dropped, all CPUs, from /proc/net/softnet_stat (hex)."""
    return sum(int(l.split()[1], 16) for l in softnet_stat.splitlines() if l.strip())


def snap(path, proc="/proc"):
    """Writes a snapshot (time, per-CPU times, every process's CPU ticks, backlog drops) to
    `path` as JSON."""
    with open(os.path.join(proc, "stat")) as f:
        s = {"t": time.monotonic(), "cpu": cpu_times(f.read()), "proc": {}, "softnet_dropped": 0}
    for p in os.listdir(proc):
        if p.isdigit():
            try:
                with open(os.path.join(proc, p, "stat")) as f:
                    s["proc"][p] = proc_ticks(f.read())
            except (OSError, ValueError):
                pass
    with open(os.path.join(proc, "net", "softnet_stat")) as f:
        s["softnet_dropped"] = softnet_dropped(f.read())
    with open(path, "w") as f:
        json.dump(s, f)


def sample(log, pid, secs, out0, out1):
    """The sampler (see the module's doc): returns without a sample when PID exits first."""
    seen = ""
    while os.path.exists("/proc/" + pid):
        try:
            with open(log, errors="replace") as f:
                seen = f.read()
        except OSError:
            pass
        if " measure " in seen:
            time.sleep(0.2)
            snap(out0)
            time.sleep(secs)
            snap(out1)
            break
        time.sleep(0.05)


# ---------------------------------------------------------------------------------------------
# A point's record.

def cpu_usage(a, b, hz):
    """What the CPUs did between snapshots a and b: per-CPU usr/sys/softirq/idle/steal %, the
    % of a CPU taken by rvs-pktgen, rvsd and ksoftirqd, other processes' total and the four
    busiest of them, and the backlog drops in between."""
    cpus = {}
    for c in sorted(b["cpu"]):
        d = [y - x for x, y in zip(a["cpu"][c], b["cpu"][c])]
        tot = sum(d) or 1
        # user nice system idle iowait irq softirq steal
        cpus[c] = {"usr": round(100.0 * (d[0] + d[1]) / tot, 1), "sys": round(100.0 * d[2] / tot, 1),
                   "softirq": round(100.0 * (d[5] + d[6]) / tot, 1),
                   "idle": round(100.0 * (d[3] + d[4]) / tot, 1), "steal": round(100.0 * d[7] / tot, 1)}
    dt = b["t"] - a["t"]
    procs = {}
    for pid, (comm, t1) in b["proc"].items():
        t0 = a["proc"].get(pid, [comm, t1])[1]
        if t1 > t0:
            procs.setdefault(comm, 0)
            procs[comm] += (t1 - t0) / hz / dt * 100.0
    ours = {k: round(v, 1) for k, v in procs.items() if k in ("rvs-pktgen", "rvsd") or k.startswith("ksoftirqd")}
    other = round(sum(v for k, v in procs.items() if k not in ours), 1)
    return {"sample_s": round(dt, 2), "cpus": cpus, "procs": ours, "other_procs_pct": other,
            "other_top": sorted(((round(v, 1), k) for k, v in procs.items() if k not in ours and v >= 2), reverse=True)[:4],
            "softnet_dropped": b["softnet_dropped"] - a["softnet_dropped"]}


def iface_counters(text):
    """Packet counters per interface from `ip -s -j link show` output, one JSON array per line
    (lines that are not JSON are skipped)."""
    out = {}
    for l in (text or "").splitlines():
        l = l.strip()
        if not l:
            continue
        try:
            for e in json.loads(l):
                s = e.get("stats64", {})
                out[e["ifname"]] = {"rx": s.get("rx", {}).get("packets", 0), "rx_dropped": s.get("rx", {}).get("dropped", 0),
                                    "tx": s.get("tx", {}).get("packets", 0), "tx_dropped": s.get("tx", {}).get("dropped", 0)}
        except ValueError:
            pass
    return out


def iface_delta(f0, f1):
    """The counters of f1 minus those of f0 per interface (an interface missing from f0 counts
    from 0), loopback left out."""
    return {k: {c: f1[k][c] - f0.get(k, {}).get(c, 0) for c in f1[k]} for k in f1 if k != "lo"}


def _json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _pktgen(path):
    try:
        return bench_records.last_json_line(path)
    except (OSError, ValueError):
        return None


def point_record(work, name, fields, hz):
    """The record of point `name`: the RECORD_FIELDS, rvs-pktgen's result, the setup commands,
    rvsd's counters, the CPU sample and the interface counters' deltas, from what the point
    left in the folder `work`."""
    bench_records.require(fields, RECORD_FIELDS)
    r = {"point": name}
    for k in RECORD_FIELDS:
        r[k] = int(fields[k]) if k == "busy_before" else fields[k]
    at = lambda suffix: os.path.join(work, name + suffix)  # noqa: E731
    r["pktgen"] = _pktgen(at(".pktgen.json"))
    r["setup"] = bench_records.read_text(at(".cmds"))
    r["rvsd_counters"] = bench_records.read_text(at(".counters"))
    a, b = _json(at(".snap0.json")), _json(at(".snap1.json"))
    if a and b:
        r["cpu"] = cpu_usage(a, b, hz)
    before, after = (iface_counters(bench_records.read_text(at(s))) for s in (".if0.json", ".if1.json"))
    r["ifaces"] = iface_delta(before, after)
    return r


def point_summary(r):
    """One line on a point's outcome, for the log."""
    p = r["pktgen"] or {}
    if "delivered_mpps" in p:
        return "  %s: offered %.0f/s, delivered %.0f/s, loss %.3f %%, mismatches %d, cpu %s" % (
            r["point"], p["offered_mpps"] * 1e6, p["delivered_mpps"] * 1e6, p["loss_pct"],
            p["mismatches"] + p["server_mismatches"], json.dumps(r.get("cpu", {}).get("cpus")))
    return "  %s: FAILED: %s %s %s" % (r["point"], p.get("error", ""), r["error"], r["dut_error"])


# ---------------------------------------------------------------------------------------------
# The report.

def directors(dut_cpu):
    """How the report names each director mode."""
    return {
        "kernel": "kernel (nftables DNAT), softirq on the sender's CPU",
        "kernel-rps": "kernel (nftables DNAT), RPS to CPU %s" % dut_cpu,
        "rvs": "rvsd, 1 worker on lcore %s" % dut_cpu,
    }


def pk(r):
    """rvs-pktgen's result of a record, None when it has no figures."""
    p = r.get("pktgen") or {}
    return p if "delivered_mpps" in p else None


def busy(c):
    """A CPU's busy %, from its usage figures."""
    return 100.0 - c["idle"]


def counters(r):
    """rvsd's counters (rvsadm -L -n --counters) as a dict."""
    return bench_records.rvsd_counters(r.get("rvsd_counters") or "")


def ring_drops(r):
    """Frames the kernel handed to d-ext's af_packet socket that rvsd never read (its ring was full)."""
    c, i = counters(r), (r.get("ifaces") or {}).get("d-ext")
    if "port.ext.rx_packets" not in c or not i:
        return None
    return max(0, i["rx"] - c["port.ext.rx_packets"])


def limit(r, meta):
    """What limited this point, from loss and CPU time."""
    p = pk(r)
    if p is None:
        return "failed"
    c = (r.get("cpu") or {}).get("cpus", {})
    G, D = meta["gen_cpu"], meta["dut_cpu"]
    g, d = c.get("cpu%s" % G), c.get("cpu%s" % D)
    notes = []
    if r["rate"] != "0":
        if p["loss_pct"] < 0.1 and p["offered_mpps"] * 1e6 >= 0.97 * float(meta["rate_n"]):
            notes.append("takes the offered rate")
        elif p["offered_mpps"] * 1e6 < 0.97 * float(meta["rate_n"]):
            notes.append("generator could not offer the rate")
        else:
            notes.append("drops at this rate")
        if r["mode"] == "kernel" and g and g["softirq"] + g["sys"] > 20:
            notes.append("the kernel forwards in softirq on CPU %s (the generator's)" % G)
    elif r["mode"] == "rvs":
        if p["loss_pct"] >= 1.0:
            rd = ring_drops(r)
            notes.append("director-bound: rvsd delivered %.0f %% of what was offered%s" % (
                100.0 - p["loss_pct"], "; its af_packet RX ring dropped %s frames" % "{:,}".format(rd) if rd else ""))
            if d:
                notes.append("CPU %s: %.0f %% usr (rvsd), %.0f %% sys + softirq (af_packet transmit: veth, delivery into rvs-pktgen's ring)" % (
                    D, d["usr"], d["sys"] + d["softirq"]))
            if g and busy(g) >= 95:
                notes.append("CPU %s saturated too (rvs-pktgen; %.0f %% sys + softirq), so offered is the generator's ceiling" % (
                    G, g["sys"] + g["softirq"]))
        elif g and busy(g) >= 95:
            notes.append("generator-bound: CPU %s %.0f %% busy, no loss: rvsd took all that was offered" % (G, busy(g)))
        else:
            notes.append("no saturated CPU found")
    else:
        if d and busy(d) >= 95 and d["softirq"] >= 50:
            notes.append("director-bound: CPU %s %.0f %% in softirq (the kernel's forwarding)" % (D, d["softirq"]))
            if g and g["idle"] > 20:
                notes.append("rvs-pktgen blocks in poll() on its full af_packet TX ring (CPU %s %.0f %% idle): the kernel takes frames from it only as its socket's send buffer drains, i.e. as CPU %s forwards them; this back pressure keeps loss low" % (G, g["idle"], D))
        elif p["loss_pct"] >= 1.0:
            notes.append("director-bound: %.1f %% lost" % p["loss_pct"])
        elif g and busy(g) >= 95:
            notes.append("generator core saturated, shared: rvs-pktgen and, in softirq inside its sendto(), the kernel's forwarding (%.0f %% sys + softirq) on CPU %s; CPU %s %.0f %% idle" % (
                g["sys"] + g["softirq"], G, D, d["idle"] if d else float("nan")))
        else:
            notes.append("no saturated CPU found")
    if (r.get("cpu") or {}).get("other_procs_pct", 0) > 5:
        notes.append("other work: %.0f %% of a CPU" % r["cpu"]["other_procs_pct"])
    if r.get("busy_before", 0) > 15:
        notes.append("machine %d %% busy before" % r["busy_before"])
    return "; ".join(notes)


def cpu_cell(r, cpu):
    """A CPU's usr / sys / softirq / idle % during the point, or a dash."""
    c = ((r.get("cpu") or {}).get("cpus") or {}).get(cpu)
    if not c:
        return "–"
    return "%.0f / %.0f / %.0f / %.0f" % (c["usr"], c["sys"], c["softirq"], c["idle"])


def _n(x):
    return "{:,}".format(x)


def losses(r):
    """Where frames went missing over the whole point (warm-up and drain included), from
    rvs-pktgen's port counters and the veth ends' counters (a few ARP frames blur these)."""
    p = pk(r)
    ps = p.get("port_stats", {})
    ifc = r.get("ifaces") or {}
    t = p.get("total", {})
    extra = []
    if all(k in ifc for k in ("g-ext", "g-int", "d-ext", "d-int")) and "ext" in ps and "int" in ps:
        gen_tx = max(0, ps["ext"]["opackets"] - ifc["g-ext"]["tx"]) + max(0, ps["int"]["opackets"] - ifc["g-int"]["tx"])
        fwd = max(0, ifc["d-ext"]["rx"] - ifc["d-int"]["tx"])
        rev = max(0, ifc["d-int"]["rx"] - ifc["d-ext"]["tx"])
        missed = sum((ps.get(x) or {}).get("imissed", 0) for x in ("ext", "int"))
        if gen_tx > 20:
            extra.append("%s frames counted as sent by rvs-pktgen never reached the veth: the af_packet PMD counts a "
                         "frame sent once it is in its TX ring and kicks the kernel with a non-blocking sendto(), which "
                         "stops early while the socket's send buffer is full; what is still in the ring when "
                         "rvs-pktgen stops sending is never transmitted (about one ring per port, as many in 3 s "
                         "as in 8 s runs). An artifact of the run's end, counted in the loss column" % _n(gen_tx))
            if fwd <= 20 and rev <= 20:
                extra.append("the director itself lost nothing (d-ext rx = d-int tx, d-int rx = d-ext tx)")
        if fwd > 20:
            rd = ring_drops(r) if r["mode"] == "rvs" else None
            extra.append("the director forwarded %s fewer client frames than reached d-ext%s" % (
                _n(fwd), " (%s of them dropped by its af_packet RX ring)" % _n(rd) if rd else ""))
        if rev > 20:
            extra.append("the director forwarded %s fewer replies than reached d-int" % _n(rev))
        if missed:
            extra.append("rvs-pktgen's receive rings dropped %s (imissed)" % _n(missed))
    if t.get("server_tx_drop"):
        extra.append("%s reflected frames not taken by g-int" % _n(t["server_tx_drop"]))
    if t.get("mbuf_alloc_fail"):
        extra.append("%s mbuf allocation failures" % _n(t["mbuf_alloc_fail"]))
    sd = (r.get("cpu") or {}).get("softnet_dropped")
    if sd:
        extra.append("%s frames dropped by the kernel's backlog queues (softnet_stat, during the CPU sample)" % _n(sd))
    return extra


def delivered(by, name):
    """The delivered round trips/s of point `name`, None when it has no figures."""
    r = by.get(name)
    p = pk(r) if r else None
    return p["delivered_mpps"] * 1e6 if p else None


def report(recs, meta, conf=None):
    """The lines of the kernel-bench section: `recs` the records in the order measured, `meta`
    the REPORT_FIELDS, `conf` the text of rvsd's configuration (None: left out)."""
    bench_records.require(meta, REPORT_FIELDS)
    by = {r["point"]: r for r in recs}
    gen, dut = "cpu%s" % meta["gen_cpu"], "cpu%s" % meta["dut_cpu"]
    director = directors(meta["dut_cpu"])
    L = ["## Kernel baseline: kernel director vs rvsd, same generator, same veths (kernel-bench)", ""]
    L.append("Written by `scripts/kernel-bench.sh` between the kernel-bench markers; do not edit by hand, run the script again.")
    L.append("")
    L.extend(bench_records.table([
        ("date (UTC)", meta["date"]),
        ("machine", "nproc %s, %s, kernel %s" % (meta["nproc"], meta["cpu"], meta["kernel"])),
        ("DPDK", "%s (Debian packages), net_af_packet (framecnt=4096, qpairs=1) on every veth end" % meta["dpdk"]),
        ("rvs commit", meta["commit"]),
        ("binaries built", meta["binaries"]),
        ("command", "`%s` (%s s in all)" % (meta["command"], meta["elapsed"])),
        ("load average", "%s at start, %s at the end (a shared machine: other work skews every figure)" % (
            meta["load"], meta["end_load"])),
        ("traffic", "UDP, %s flows (client 198.51.100.10, ports 1024..), 64-byte frames, to VIP 198.51.100.1:9000, "
                    "round robin over 4 real servers 192.0.2.2-5:9000; warm-up %s s, %s s measured per point" % (
                        meta["flows"], meta["warmup"], meta["duration"])),
        ("CPUs", "rvs-pktgen: EAL `-l %s` (CPU %s). rvsd: EAL `-l %s`, worker lcore %s (CPU %s), busy-polling. "
                 "kernel: softirq on CPU %s (where rvs-pktgen's sendto() runs) or, with RPS, on CPU %s. Niceness "
                 "of rvs-pktgen and rvsd %s" % (meta["gen_cpu"], meta["gen_cpu"], meta["dut_cpu"], meta["dut_cpu"],
                                                meta["dut_cpu"], meta["gen_cpu"], meta["dut_cpu"], meta["nice"])),
    ]))
    L.append("")
    L.append("Topology (rebuilt for each point): namespace `rvs-kb-gen` holds rvs-pktgen's two veth ends `g-ext` and "
             "`g-int`; namespace `rvs-kb-dut` their peers `d-ext` (198.51.100.1/24, the VIP) and `d-int` (192.0.2.1/24, "
             "the DIP). rvs-pktgen plays the clients on g-ext and the real servers on g-int (it reflects what arrives there "
             "5-tuple-swapped and answers ARP), and checks every reply. Directors: **kernel** = ip_forward=1, rp_filter 0, "
             "nftables `dnat to numgen inc mod 4 map {...}`, conntrack de-NATs the replies; **kernel-rps** = the same with "
             "RPS (`rps_cpus`) on d-ext and d-int steering the forwarding to CPU %s, so the kernel, like rvsd, works on a "
             "core of its own; **rvs** = rvsd on net_af_packet d-ext/d-int, `-A -u 198.51.100.1:9000 -s rr` and the 4 "
             "real servers `-m`. Offloads off on every veth end. Where only a DPDK process should see the frames "
             "(g-ext/g-int; d-ext/d-int under rvsd) an nftables netdev ingress chain drops them after af_packet took its "
             "copy." % meta["dut_cpu"])
    L.append("")
    L.append("How veth works here, stated plainly: a frame sent on a veth is received by its peer in softirq on the "
             "sending CPU, inside the sender's sendto(). Without RPS the kernel director's whole forwarding path (both "
             "directions: rvs-pktgen sends the client frames and the servers' replies) runs on CPU %s, rvs-pktgen's core, "
             "so generator and kernel director share one core and CPU %s stays idle: that point measures the two "
             "together. With RPS, CPU %s only queues each frame to CPU %s's backlog, and CPU %s forwards it (ksoftirqd) and "
             "delivers it into rvs-pktgen's receiving ring. rvsd busy-polls CPU %s; the copy of a frame into the "
             "receiving af_packet ring is paid by the sender's CPU, so rvs-pktgen's core pays for frames to rvsd and "
             "rvsd's core, inside its sendto(), for frames back to rvs-pktgen (as the kernel's core does with RPS)." % (
                 meta["gen_cpu"], meta["dut_cpu"], meta["gen_cpu"], meta["dut_cpu"], meta["dut_cpu"], meta["dut_cpu"]))
    L.append("")
    L.append("Round trips/s: replies that reached the client side, checked, per second of the measurement (a client "
             "frame to the VIP, DNAT, the real server's reflected reply, de-NAT, back to the client); the director "
             "forwards 2 frames per round trip. Offered: client frames/s sent. Loss: frames sent during the measurement "
             "whose reply never came. At `--rate 0` rvs-pktgen sends as fast as its core can: what rvsd does not read "
             "in time overflows its af_packet RX ring and is lost (offered - delivered), while the kernel director "
             "slows the sender down instead (without RPS it forwards on the sender's own CPU; with RPS frames waiting "
             "in CPU %s's backlog fill rvs-pktgen's socket send buffer, and rvs-pktgen blocks on its full TX ring). CPU columns: usr / sys / "
             "softirq / idle %% of each CPU, sampled over the middle of the measurement." % meta["dut_cpu"])
    L.append("")
    L.append("| point | director | offered frames/s | delivered round trips/s | loss %% | latency us p50 / p99 | mismatches | CPU %s (gen) usr/sys/si/idle | CPU %s (DUT) usr/sys/si/idle | limit |" % (meta["gen_cpu"], meta["dut_cpu"]))
    L.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    failures = []
    for r in recs:
        p = pk(r)
        if p is None:
            why = ((r.get("pktgen") or {}).get("error") or r.get("error") or "no result") + ((" " + r["dut_error"]) if r.get("dut_error") else "")
            failures.append("%s: %s" % (r["point"], why))
            L.append("| %s | %s | FAILED | | | | | | | %s |" % (r["point"], director[r["mode"]], why.replace("|", "/")))
            continue
        if r.get("dut_error"):
            failures.append("%s (figures kept): %s" % (r["point"], r["dut_error"]))
        l = p["latency_us"]
        L.append("| %s | %s | %s | **%s** | %.3f | %.0f / %.0f | %d | %s | %s | %s |" % (
            r["point"], director[r["mode"]], "{:,.0f}".format(p["offered_mpps"] * 1e6),
            "{:,.0f}".format(p["delivered_mpps"] * 1e6), p["loss_pct"], l["p50"], l["p99"],
            p["mismatches"] + p["server_mismatches"], cpu_cell(r, gen), cpu_cell(r, dut), limit(r, meta)))
    L.append("")
    rv, k, kr = delivered(by, "rvs-max"), delivered(by, "kernel-max"), delivered(by, "kernel-rps-max")
    if rv and k:
        L.append("**rvs / kernel delivered round trips/s, each as fast as it takes them: %.2f** (%s vs %s; the kernel "
                 "as veth runs it by default, forwarding in softirq on the generator's core, CPU %s, while CPU %s "
                 "idles)." % (rv / k, "{:,.0f}".format(rv), "{:,.0f}".format(k), meta["gen_cpu"], meta["dut_cpu"]))
    if rv and kr:
        L.append("")
        L.append("**rvs / kernel with RPS: %.2f** (%s vs %s; each director forwarding on CPU %s, a core of its own, "
                 "the like-for-like comparison)." % (rv / kr, "{:,.0f}".format(rv), "{:,.0f}".format(kr), meta["dut_cpu"]))
    L.append("")

    # What limits the figures, from the measurements.
    L.append("### What limits these figures")
    L.append("")
    notes = []
    for name in ("kernel-max", "kernel-rps-max", "rvs-max"):
        r = by.get(name)
        if r and pk(r):
            notes.append("%s: %s." % (name, limit(r, meta)))
    for r in recs:
        if not pk(r):
            continue
        extra = losses(r)
        if extra:
            notes.append("%s: %s." % (r["point"], "; ".join(extra)))
    for n in notes:
        L.append("- " + n)
    L.append("- The transport is af_packet over veth for both directors: every frame is copied into and out of a "
             "kernel ring and moved by a sendto() per burst, at a few hundred thousand frames/s per core. These are "
             "not rvsd's figures over memif or a NIC (see the traffic benchmark), only a comparison with the kernel "
             "over the same veths.")
    L.append("- rvs-pktgen does three frames' work per round trip (build, reflect, check) plus the kernel's transmit "
             "path for two frames on its one core, so at `--rate 0` its offered rate is itself a ceiling; a point "
             "whose loss is ~0 and whose generator CPU is ~100 % busy measured the generator, not the director.")
    if failures:
        L.append("")
        L.append("Failures:")
        L.append("")
        for f in failures:
            L.append("- " + f)
    L.append("")
    L.append("### Commands")
    L.append("")
    L.append("Each point: its namespaces and veths are built (below), rvsd started when it is the director (and "
             "its control socket awaited), then rvs-pktgen, which ends by itself; rvsd is stopped with SIGTERM, "
             "the namespaces deleted.")
    L.append("")
    setups = {}
    for r in recs:
        if r["mode"] not in setups and r.get("setup"):
            setups[r["mode"]] = r["setup"].rstrip().splitlines()
    for mode, lines in setups.items():
        if mode == "kernel-rps" and "kernel" in setups:
            # Built the same way, plus RPS.
            L.append("Setup for kernel-rps: as for kernel, then:")
            lines = [l for l in lines if l not in setups["kernel"]]
        else:
            L.append("Setup for %s:" % mode)
        L.append("")
        L.extend(bench_records.code_block(lines, "sh"))
        L.append("")
    for r in recs:
        L.append("- %s:" % r["point"])
        if r.get("dut_cmd"):
            L.append("  - rvsd: `%s`" % r["dut_cmd"])
        L.append("  - rvs-pktgen: `%s`" % r["pktgen_cmd"])
    L.append("")
    L.extend(bench_records.rvsd_config(conf))
    for r in recs:
        c = counters(r)
        if c:
            L.append("rvsd's counters (`rvsadm -L -n --counters`, the non-zero ones) at the end of %s: %s." % (
                r["point"], ", ".join("%s %s" % (k, "{:,}".format(v)) for k, v in c.items() if v)))
            L.append("")
    L.extend(bench_records.raw_results(
        ({k: r.get(k) for k in ("point", "mode", "rate", "load", "busy_before", "error", "dut_error", "cpu", "ifaces",
                                "pktgen")} for r in recs),
        "Per point: rvs-pktgen's JSON line, the CPU sample (per-CPU %, our processes' and ksoftirqd's % of a CPU, "
        "other processes' total) and the veth ends' packet counters over the whole point."))
    return L


def console(L):
    """The part of the section worth printing: everything up to the commands."""
    return "\n".join(bench_records.up_to_commands(L))


def main(argv):
    ap = argparse.ArgumentParser(prog="kernel_bench.py", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("sample", help="sample the CPUs during rvs-pktgen's measurement")
    a.add_argument("log", help="rvs-pktgen's stderr")
    a.add_argument("pid", help="rvs-pktgen's PID")
    a.add_argument("secs", type=float, help="seconds between the two snapshots")
    a.add_argument("out0")
    a.add_argument("out1")
    a = sub.add_parser("record", help="append a point's record")
    a.add_argument("records")
    a.add_argument("work")
    a.add_argument("name")
    a.add_argument("fields", nargs="*", metavar="KEY=VALUE")
    bench_records.add_report_parser(sub, "kernel-bench", "rvsd's configuration (may not exist)")
    args = ap.parse_args(argv)

    if args.cmd == "sample":
        sample(args.log, args.pid, args.secs, args.out0, args.out1)
    elif args.cmd == "record":
        r = point_record(args.work, args.name, bench_records.parse_pairs(args.fields), os.sysconf("SC_CLK_TCK"))
        bench_records.append(args.records, r)
        print(point_summary(r), file=sys.stderr)
    else:
        bench_records.write_report(args, "kernel-bench", report, console)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
