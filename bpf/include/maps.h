/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The maps themselves. Every program includes this one header, so two
 * programs that name a map name the same map; the loader pins each by name
 * under /sys/fs/bpf/swarmnet/<node>/v<SN_LAYOUT_VERSION>/ and a reload reuses the pins.
 */
#ifndef SN_MAPS_H
#define SN_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "layout.h"

#define SN_MAX_ENDPOINTS 65536
#define SN_MAX_NETWORKS 4096
#define SN_MAX_DEVICES 16384
#define SN_MAX_SERVICES 65536
#define SN_MAX_MAGLEV_CHUNKS 131072
#define SN_MAX_BACKENDS 262144
#define SN_MAX_CT 131072

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sn_config);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sn_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SN_MAX_NETWORKS);
	__type(key, __u32);
	__type(value, struct sn_network);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sn_networks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SN_MAX_ENDPOINTS);
	__type(key, struct sn_endpoint_key);
	__type(value, struct sn_endpoint);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sn_endpoints SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SN_MAX_DEVICES);
	__type(key, __u32);
	__type(value, struct sn_device);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sn_devices SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SN_MAX_SERVICES);
	__type(key, struct sn_service_key);
	__type(value, struct sn_service);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sn_services SEC(".maps");

/* Allocated as written (1 KiB a chunk): room for two tables per service while one replaces the other. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SN_MAX_MAGLEV_CHUNKS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct sn_maglev_key);
	__type(value, struct sn_maglev_chunk);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sn_maglev SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SN_MAX_BACKENDS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct sn_backend_key);
	__type(value, struct sn_backend);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sn_backends SEC(".maps");

/* Datapath-owned: TCP entries go at RST or after FIN both ways (a bpf_timer), UDP ones when found idle (nat.h), any by LRU pressure. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, SN_MAX_CT);
	__type(key, struct sn_ct_key);
	__type(value, struct sn_ct);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sn_ct SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SN_COUNTER_SLOTS);
	__type(key, __u32);         /* enum sn_counter */
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sn_stats SEC(".maps");

/* One array lookup per packet outcome (inlined by the verifier); per-CPU, so no atomics. */
static __always_inline void sn_count(__u32 counter)
{
	__u64 *v = bpf_map_lookup_elem(&sn_stats, &counter);

	if (v)
		*v += 1;
}

/*
 * Count a drop under its own reason and give the hook's drop verdict. The
 * verdict is a constant, not a helper's return value, so the verifier sees
 * that a caller given it never reads the packet again.
 */
#define sn_drop_as(counter, verdict) ({ sn_count(counter); (verdict); })
#define sn_xdp_drop(counter) sn_drop_as(counter, XDP_DROP)
#define sn_tc_drop(counter) sn_drop_as(counter, TC_ACT_SHOT)

/*
 * The node's config, or NULL until the agent has written it: an array map's
 * entry always exists (zeroed), so SN_CONFIG_READY, set by the agent with
 * the rest, is what says it holds a config.
 */
static __always_inline struct sn_config *sn_get_config(void)
{
	__u32 key = 0;
	struct sn_config *cfg = bpf_map_lookup_elem(&sn_config, &key);

	return cfg && (cfg->flags & SN_CONFIG_READY) ? cfg : NULL;
}

#endif
