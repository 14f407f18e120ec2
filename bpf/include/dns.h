/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The DNS fast path (bpf/tc_dns.c): the names it answers and who may ask.
 * Written by the agent's reconciler from the same name table the TypeScript
 * responder answers from (src/dns/names.ts, src/dns/fastpath.ts).
 */
#ifndef SN_DNS_H
#define SN_DNS_H

#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "layout_dns.h"

#define SN_MAX_DNS_NAMES 65536
#define SN_MAX_DNS_SCOPES 16384

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SN_MAX_DNS_NAMES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct sn_dns_key);
	__type(value, struct sn_dns_name);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sn_dns_names SEC(".maps");

/* By (VNI, address): the names reverse questions get, for tasks' and VIPs' addresses. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SN_MAX_DNS_NAMES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct sn_dns_ptr_key);
	__type(value, struct sn_dns_ptr);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sn_dns_ptrs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SN_MAX_DNS_SCOPES);
	__type(key, __u32);
	__type(value, struct sn_dns_scope);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sn_dns_scopes SEC(".maps");

#endif
