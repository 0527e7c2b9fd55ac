/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The caretaker's gap runtime: the layout of its block, shared by gap_runtime.S
 * (the runtime) and gap.c (which builds the block).  See gap.c.
 */
#ifndef __KVM_X86_CARETAKER_GAP_H
#define __KVM_X86_CARETAKER_GAP_H

/* The block: 2^KVM_CT_GAP_ORDER pages, naturally aligned.  Offsets: */
#define KVM_CT_GAP_ORDER	5
#define KVM_CT_GAP_CODE		0x0000	/* two pages: the runtime, copied */
#define KVM_CT_GAP_IDT		0x2000	/* 256 gates */
#define KVM_CT_GAP_STATE	0x3000	/* GDT, TSS, then the runtime's state */
#define KVM_CT_GAP_CTL		0x4000	/* struct kvm_caretaker_ctl */
#define KVM_CT_GAP_STACK	0x6000	/* top of the stack, page 0x5000 */
#define KVM_CT_GAP_IST_NMI	0x7000	/* tops of the IST stacks */
#define KVM_CT_GAP_IST_DF	0x8000
#define KVM_CT_GAP_IST_MC	0x9000
#define KVM_CT_GAP_PGTABLE	0x9000	/* the top level, then the tables below */
#define KVM_CT_GAP_TABLES	8	/* for the block and the switch, 5 levels */
#define KVM_CT_GAP_PAGES	18	/* pages in use */
/* The last page: the local APIC's, for xAPIC mode. */
#define KVM_CT_GAP_APIC		(((1 << KVM_CT_GAP_ORDER) - 1) * 0x1000)

/* In the state page. */
#define KVM_CT_GAP_GDT		0x000	/* null, null, code, data, TSS (16 bytes) */
#define KVM_CT_GAP_TSS		0x040
#define KVM_CT_GAP_CR3		0x100	/* the runtime's page table */
#define KVM_CT_GAP_GDTR		0x110	/* struct desc_ptr */
#define KVM_CT_GAP_IDTR		0x120
#define KVM_CT_GAP_TMICT	0x130	/* the tick's initial count */
#define KVM_CT_GAP_TICKS	0x138	/* written by the runtime: */
#define KVM_CT_GAP_NMIS		0x140
#define KVM_CT_GAP_FAULT	0x148	/* vector + 1 of an exception, or 0 */
#define KVM_CT_GAP_FAULT_RIP	0x150
#define KVM_CT_GAP_TSC_TICK	0x158	/* TSC per tick in TSC-deadline mode, or 0 */
#define KVM_CT_GAP_NEXT_TICK	0x160
#define KVM_CT_GAP_X2APIC	0x168	/* 1: x2APIC MSRs, 0: xAPIC MMIO at KVM_CT_GAP_APIC */
#define KVM_CT_GAP_SWITCH_SLOT	0x170	/* the top-level entry that maps the switch */
#define KVM_CT_GAP_SWITCH_ENTRY	0x178	/* its value, set again at each entry */

/* The kernel's selectors (pack_gate() puts __KERNEL_CS in every gate). */
#define KVM_CT_GAP_CS		0x10
#define KVM_CT_GAP_DS		0x18
#define KVM_CT_GAP_TR		0x20
#define KVM_CT_GAP_TICK_VECTOR	0xec	/* the runtime's own tick */
#define KVM_CT_GAP_STUB_SIZE	16	/* per vector, from the stubs' start */

/* struct kvm_caretaker_ctl, for the runtime. */
#define KVM_CT_CTL_CMD_SEQ	64
#define KVM_CT_CTL_CMD		72
#define KVM_CT_CTL_ACK_SEQ	128
#define KVM_CT_CTL_STATE	136
#define KVM_CT_CTL_HEARTBEAT	144

/* Commands and states the runtime knows (as KVM_CARETAKER_CMD_* etc.). */
#define KVM_CT_CMD_PARK		4
#define KVM_CT_CMD_FAULT	5
#define KVM_CT_STATE_GAP	5
#define KVM_CT_STATE_PARKED	6
#define KVM_CT_STATE_FAULTED	7

#ifndef __ASSEMBLER__
#include <linux/types.h>

/* gap_runtime.S: the runtime, and where its stubs start in it. */
extern const u8 kvm_caretaker_gap_code[], kvm_caretaker_gap_code_end[];
extern const u64 kvm_caretaker_gap_stubs_offset;
/* In kernel text: load the runtime's page table, and jump to its entry. */
void kvm_caretaker_gap_switch(u64 cr3, unsigned long entry, void *state);
#endif

#endif /* __KVM_X86_CARETAKER_GAP_H */
