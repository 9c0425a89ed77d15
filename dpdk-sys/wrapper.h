/* The DPDK headers rvs binds to, plus small static inline helpers for what DPDK exposes only as
 * macros or bitfields. bindgen's wrap_static_fns turns every static inline function here (and in
 * the allowlisted DPDK headers) into a real symbol that Rust can call. */
#ifndef RVS_DPDK_WRAPPER_H
#define RVS_DPDK_WRAPPER_H
#include <rte_config.h>
#include <rte_common.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_launch.h>
#include <rte_cycles.h>
#include <rte_malloc.h>
#include <rte_memory.h>
#include <rte_mempool.h>
#include <rte_mbuf.h>
#include <rte_ethdev.h>
#include <rte_ether.h>
#include <rte_hash.h>
#include <rte_jhash.h>
#include <rte_hash_crc.h>
#include <rte_version.h>
#include <rte_telemetry.h>
#include <rte_pdump.h>

/* rte_errno is a per-lcore macro. */
static inline int rvs_rte_errno(void) { return rte_errno; }

/* rte_pktmbuf_mtod is a macro. */
static inline void *rvs_mbuf_data(struct rte_mbuf *m) { return rte_pktmbuf_mtod(m, void *); }

static inline uint16_t rvs_mbuf_data_len(const struct rte_mbuf *m) { return m->data_len; }

/* Single-segment packets only: data and packet lengths move together. */
static inline void rvs_mbuf_set_len(struct rte_mbuf *m, uint16_t len)
{
	m->data_len = len;
	m->pkt_len = len;
}

static inline uint16_t rvs_mbuf_nb_segs(const struct rte_mbuf *m) { return m->nb_segs; }

static inline uint16_t rvs_mbuf_port(const struct rte_mbuf *m) { return m->port; }
#endif
