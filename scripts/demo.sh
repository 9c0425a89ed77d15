#!/usr/bin/env bash
# The rvs demo on a fresh Debian 12 machine: install what is needed (scripts/setup.sh), build
# rvsd and rvsadm (release), then run the LVS-NAT walk-through in the namespace lab
# (scripts/lab.sh demo): four HTTP requests to the VIP answered rs1, rs2, rs1, rs2, then four to
# the IPv6 VIP, the same.
#
#   sudo scripts/demo.sh            # rvsd as the director
#   sudo scripts/demo.sh --kernel   # the Linux kernel (nftables DNAT) as the director instead
#
# The lab is removed afterwards, also when a step fails.
set -euo pipefail
# shellcheck source=scripts/lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

case ${1:-} in -h | --help) usage_header; exit 0 ;; esac
need_root
"$RVS_ROOT/scripts/setup.sh"
exec "$RVS_ROOT/scripts/lab.sh" demo "$@"
