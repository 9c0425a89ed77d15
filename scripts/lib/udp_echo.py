#!/usr/bin/env python3
"""UDP echo service and fragment probe for the rvs lab (used by scripts/lab-fragments-check.sh).

  udp_echo.py serve --port P --name NAME
      Answers every datagram with NAME "\\n" followed by the datagram, so the client can check
      both which real server answered and that the server got the datagram whole. A datagram
      whose first line is "reply=ORDER" gets its answer sent in that fragment ORDER (below).

  udp_echo.py ask --dst ADDR:PORT --size N --count C --order ORDER --reply-order ORDER
      Sends C datagrams of N bytes of UDP payload, each from a new socket (a new source port,
      so a new connection for the director), waits for each answer and checks it. Prints one
      line per datagram and a last line "result sent=.. answered=.. req_frags=.. reply_frags=..
      servers=..". Exit status 0 when it could run (the caller judges the counts), 2 on errors.

ORDER says how a datagram leaves its sender:
  kernel        an ordinary UDP socket: the kernel fragments it (in order) at the MTU
  inorder       fragments built here, sent over a raw socket first to last
  reverse       raw fragments sent last to first: the first fragment (the one with the ports)
                arrives after every other one
  tail-reverse  raw: the first fragment first, the others last to first
"""

import argparse
import os
import socket
import struct
import sys

ORDERS = ("kernel", "inorder", "reverse", "tail-reverse")
IP_HDR = 20
UDP_HDR = 8


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def fragments(src, dst, sport, dport, payload, ident, mtu):
    """The IPv4 fragments (first to last) of one UDP datagram, DF clear, as Linux would cut it."""
    s, d = socket.inet_aton(src), socket.inet_aton(dst)
    ulen = UDP_HDR + len(payload)
    pseudo = s + d + struct.pack("!BBH", 0, socket.IPPROTO_UDP, ulen)
    csum = checksum(pseudo + struct.pack("!HHHH", sport, dport, ulen, 0) + payload) or 0xFFFF
    udp = struct.pack("!HHHH", sport, dport, ulen, csum) + payload
    step = (mtu - IP_HDR) // 8 * 8
    out = []
    for off in range(0, len(udp), step):
        chunk = udp[off:off + step]
        more = 0x2000 if off + len(chunk) < len(udp) else 0
        hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, IP_HDR + len(chunk), ident,
                          more | off // 8, 64, socket.IPPROTO_UDP, 0, s, d)
        hdr = hdr[:10] + struct.pack("!H", checksum(hdr)) + hdr[12:]
        out.append(hdr + chunk)
    return out


def count_fragments(udp_payload_len, mtu):
    step = (mtu - IP_HDR) // 8 * 8
    return -(-(UDP_HDR + udp_payload_len) // step)


def arrange(frags, order):
    if order == "reverse":
        return frags[::-1]
    if order == "tail-reverse":
        return frags[:1] + frags[:0:-1]
    return frags


def send(sock, raw, src, dst, payload, order, ident, mtu):
    """Sends one datagram on connected socket `sock` (from `src`) to `dst` in `order`."""
    if order == "kernel":
        sock.sendto(payload, dst)
        return
    for f in arrange(fragments(src[0], dst[0], src[1], dst[1], payload, ident, mtu), order):
        raw.sendto(f, (dst[0], 0))


def raw_socket():
    # IPPROTO_RAW implies IP_HDRINCL: the kernel sends our headers as they are.
    return socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)


def serve(args):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sock.bind(("0.0.0.0", args.port))
    raw = raw_socket()
    name = args.name.encode() + b"\n"
    ident = int.from_bytes(os.urandom(2), "big")
    while True:
        data, peer = sock.recvfrom(65535)
        answer = name + data
        order = "kernel"
        first = data.split(b"\n", 1)[0]
        if first.startswith(b"reply="):
            order = first[len(b"reply="):].decode(errors="replace")
            if order not in ORDERS:
                order = "kernel"
        try:
            if order == "kernel":
                sock.sendto(answer, peer)
                continue
            # Our address towards the peer, for the raw fragments' source.
            probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            probe.connect(peer)
            local = (probe.getsockname()[0], args.port)
            probe.close()
            ident = ident % 0xFFFF + 1
            send(sock, raw, local, peer, answer, order, ident, args.mtu)
        except OSError as e:
            print("udp_echo: answer to %s:%d: %s" % (peer[0], peer[1], e), file=sys.stderr)


def ask(args):
    host, port = args.dst.rsplit(":", 1)
    dst = (host, int(port))
    header = b"reply=%s\n" % args.reply_order.encode()
    if args.size < len(header):
        sys.exit("udp_echo: --size must be at least %d" % len(header))
    raw = raw_socket() if args.order != "kernel" else None
    ident = int.from_bytes(os.urandom(2), "big")
    answered = 0
    servers = []
    for i in range(args.count):
        payload = header + os.urandom(args.size - len(header))
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sock.settimeout(args.timeout)
        sock.connect(dst)  # answers from anyone but dst (the VIP) are not ours
        ident = ident % 0xFFFF + 1
        send(sock, raw, sock.getsockname(), dst, payload, args.order, ident, args.mtu)
        try:
            answer = sock.recv(65535)
        except socket.timeout:
            answer = None
        sock.close()
        if answer is None:
            verdict = "no answer"
        else:
            name, _, echoed = answer.partition(b"\n")
            if echoed == payload:
                verdict = "answered by %s" % name.decode(errors="replace")
                answered += 1
                servers.append(name.decode(errors="replace"))
            else:
                verdict = "WRONG answer (%d bytes, echo %s)" % (
                    len(answer), "differs" if echoed else "missing")
        print("datagram %d: %d bytes, request %s, reply %s: %s" % (
            i + 1, args.size, args.order, args.reply_order, verdict))
    # The answer is the server's name, "\n" and the request.
    print("result sent=%d answered=%d req_frags=%d reply_frags=%d servers=%s" % (
        args.count, answered, count_fragments(args.size, args.mtu),
        count_fragments(args.size + args.name_len + 1, args.mtu), ",".join(servers) or "-"))


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--name", required=True)
    s.add_argument("--mtu", type=int, default=1500)
    a = sub.add_parser("ask")
    a.add_argument("--dst", required=True)
    a.add_argument("--size", type=int, required=True)
    a.add_argument("--count", type=int, default=1)
    a.add_argument("--order", choices=ORDERS, default="kernel")
    a.add_argument("--reply-order", choices=ORDERS, default="kernel")
    a.add_argument("--timeout", type=float, default=2.0)
    a.add_argument("--mtu", type=int, default=1500)
    a.add_argument("--name-len", type=int, default=3, help="length of the servers' names")
    args = p.parse_args()
    try:
        if args.cmd == "serve":
            serve(args)
        else:
            ask(args)
    except OSError as e:
        print("udp_echo: %s" % e, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
