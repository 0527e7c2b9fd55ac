// SPDX-License-Identifier: GPL-2.0-only
/*
 * The caretaker's gap runtime.
 *
 * Across a live update, the CPU a caretaker runs a vCPU on must go on
 * running when nothing of the old kernel may be reached any more: its text
 * and data are about to be overwritten, and the new kernel has not yet
 * taken over.  What runs there then must live in memory of its own, handed
 * over with KHO, with its own page table, GDT, IDT, TSS and stacks, and
 * talk to the host through the control block alone.
 *
 * This is that runtime's frame: one block of pages per caretaker, allocated
 * with its control block, which holds the runtime's code (gap_runtime.S, copied in),
 * an IDT whose gates all lead into the block, a GDT and a TSS with IST
 * stacks for NMI, #DF and #MC, a stack, and a page table that maps the
 * block (and its local APIC), and nothing else, at the address the kernel's
 * direct map gives it.
 * The dock enters it on the GAP command: the CPU leaves the kernel for good,
 * ticks on its local APIC timer and writes its heartbeat into the control
 * block, until PARK, an exception (recorded), or INIT when the CPU is
 * brought up again.  The vCPU goes back to its task first: running it here
 * is the next step, and so is handing the block over across a kexec.
 *
 * See Documentation/virt/kvm/caretaker.rst.
 */

#include <linux/kvm_host.h>
#include <linux/mm.h>
#include <linux/pgtable.h>
#include <linux/processor.h>
#include <linux/seq_file.h>

#include <asm/apic.h>
#include <asm/desc.h>
#include <asm/nospec-branch.h>

#include "caretaker.h"
#include "gap.h"

static_assert(offsetof(struct kvm_caretaker_ctl, cmd_seq) == KVM_CT_CTL_CMD_SEQ);
static_assert(offsetof(struct kvm_caretaker_ctl, cmd) == KVM_CT_CTL_CMD);
static_assert(offsetof(struct kvm_caretaker_ctl, ack_seq) == KVM_CT_CTL_ACK_SEQ);
static_assert(offsetof(struct kvm_caretaker_ctl, state) == KVM_CT_CTL_STATE);
static_assert(offsetof(struct kvm_caretaker_ctl, heartbeat_tsc) == KVM_CT_CTL_HEARTBEAT);
static_assert(KVM_CARETAKER_CMD_PARK == KVM_CT_CMD_PARK);
static_assert(KVM_CARETAKER_CMD_FAULT == KVM_CT_CMD_FAULT);
static_assert(KVM_CARETAKER_STATE_GAP == KVM_CT_STATE_GAP);
static_assert(KVM_CARETAKER_STATE_PARKED == KVM_CT_STATE_PARKED);
static_assert(KVM_CARETAKER_STATE_FAULTED == KVM_CT_STATE_FAULTED);
static_assert(KVM_CT_GAP_PGTABLE + (1 + KVM_CT_GAP_TABLES) * PAGE_SIZE ==
	      KVM_CT_GAP_PAGES * PAGE_SIZE);
static_assert(KVM_CT_GAP_PAGES * PAGE_SIZE <= KVM_CT_GAP_APIC);
static_assert(KVM_CT_GAP_TSS + sizeof(struct x86_hw_tss) <= KVM_CT_GAP_CR3);
static_assert(KVM_CT_GAP_CS == __KERNEL_CS && KVM_CT_GAP_DS == __KERNEL_DS);
static_assert(KVM_CT_GAP_GDT + KVM_CT_GAP_TR + 16 <= KVM_CT_GAP_TSS);

/* Whether this host can run the runtime: it needs a rate for its tick. */
bool kvm_caretaker_gap_supported(void)
{
	return boot_cpu_has(X86_FEATURE_TSC_DEADLINE_TIMER) ? tsc_khz : lapic_timer_period;
}

/* The table an entry points to, taken from the block's pool if it is new. */
static u64 *gap_next_table(void *block, unsigned int *used, u64 *entry)
{
	if (!(*entry & _PAGE_PRESENT)) {
		if (*used >= KVM_CT_GAP_TABLES)
			return NULL;
		*entry = __sme_pa(block + KVM_CT_GAP_PGTABLE + ++*used * PAGE_SIZE) | _KERNPG_TABLE;
	}
	return block + ((__sme_clr(*entry) & PTE_PFN_MASK) - __pa(block));
}

/* Map @va to @pte in the runtime's page table: 4 or 5 levels, as the kernel's. */
static int gap_map_page(void *block, unsigned int *used, unsigned long va, u64 pte)
{
	u64 *t = block + KVM_CT_GAP_PGTABLE;

	if (pgtable_l5_enabled()) {
		t = gap_next_table(block, used, &t[pgd_index(va)]);
		if (!t)
			return -ENOMEM;
		t = gap_next_table(block, used, &t[p4d_index(va)]);
	} else {
		t = gap_next_table(block, used, &t[pgd_index(va)]);
	}
	if (t)
		t = gap_next_table(block, used, &t[pud_index(va)]);
	if (t)
		t = gap_next_table(block, used, &t[pmd_index(va)]);
	if (!t)
		return -ENOMEM;
	t[pte_index(va)] = pte;
	return 0;
}

/*
 * The page table: the block at its direct-map address (code executable,
 * the rest not), the local APIC's page, and, until the runtime unmaps it,
 * the page of kernel text that switches to it.  The kernel's CR4.LA57
 * stays: the table has as many levels as the kernel's.
 */
static int gap_map(void *block)
{
	unsigned long va = (unsigned long)block;
	unsigned long sw = (unsigned long)kvm_caretaker_gap_switch & PAGE_MASK;
	u64 leaf = _PAGE_PRESENT | _PAGE_RW | _PAGE_ACCESSED | _PAGE_DIRTY;
	u64 nx = _PAGE_NX & __supported_pte_mask;
	unsigned int used = 0;
	u64 apic_base;
	int i, r = 0;

	/* The runtime unmaps the switch's top-level entry: it must be its own. */
	if (pgd_index(sw) == pgd_index(va))
		return -EINVAL;
	for (i = 0; i < KVM_CT_GAP_PAGES && !r; i++)
		r = gap_map_page(block, &used, va + i * PAGE_SIZE,
				 __sme_pa(block + i * PAGE_SIZE) | leaf |
				 (i * PAGE_SIZE >= KVM_CT_GAP_IDT ? nx : 0));
	/* The local APIC's registers, uncached, for xAPIC mode. */
	rdmsrq(MSR_IA32_APICBASE, apic_base);
	if (!r)
		r = gap_map_page(block, &used, va + KVM_CT_GAP_APIC,
				 (apic_base & MSR_IA32_APICBASE_BASE) | leaf | _PAGE_PCD |
				 _PAGE_PWT | nx);
	if (!r)
		r = gap_map_page(block, &used, sw,
				 __sme_set(slow_virt_to_phys((void *)sw)) | _PAGE_PRESENT |
				 _PAGE_ACCESSED);
	*(u64 *)(block + KVM_CT_GAP_STATE + KVM_CT_GAP_SWITCH_SLOT) = pgd_index(sw);
	*(u64 *)(block + KVM_CT_GAP_STATE + KVM_CT_GAP_SWITCH_ENTRY) =
		((u64 *)(block + KVM_CT_GAP_PGTABLE))[pgd_index(sw)];
	*(u64 *)(block + KVM_CT_GAP_STATE + KVM_CT_GAP_CR3) =
		__sme_pa(block + KVM_CT_GAP_PGTABLE);
	return r;
}

/* The TSS's descriptor in the GDT, available (not busy). */
static void gap_set_tss(void *state)
{
	u64 *gdt = state + KVM_CT_GAP_GDT;

	set_tssldt_descriptor(&gdt[KVM_CT_GAP_TR / 8], (unsigned long)(state + KVM_CT_GAP_TSS),
			      DESC_TSS, sizeof(struct x86_hw_tss) - 1);
}

/*
 * Build the runtime's block, whose control block the caller has set up:
 * called once, when the caretaker is allocated.  Returns 0, or an error if
 * the runtime cannot run from this block.
 */
int kvm_caretaker_gap_build(void *block)
{
	unsigned long va = (unsigned long)block;
	void *state = block + KVM_CT_GAP_STATE;
	u64 *gdt = state + KVM_CT_GAP_GDT;
	struct x86_hw_tss *tss = state + KVM_CT_GAP_TSS;
	struct desc_ptr *gdtr = state + KVM_CT_GAP_GDTR;
	struct desc_ptr *idtr = state + KVM_CT_GAP_IDTR;
	gate_desc *idt = block + KVM_CT_GAP_IDT;
	unsigned long stubs = va + KVM_CT_GAP_CODE + kvm_caretaker_gap_stubs_offset;
	int v, r;

	memcpy(block + KVM_CT_GAP_CODE, kvm_caretaker_gap_code,
	       kvm_caretaker_gap_code_end - kvm_caretaker_gap_code);

	/* 64-bit code, data, and the TSS (two entries), where the kernel has them. */
	gdt[KVM_CT_GAP_CS / 8] = 0x00af9b000000ffffULL;
	gdt[KVM_CT_GAP_DS / 8] = 0x00cf93000000ffffULL;
	gap_set_tss(state);
	gdtr->size = KVM_CT_GAP_TR + 16 - 1;
	gdtr->address = (unsigned long)gdt;

	tss->ist[IST_INDEX_NMI] = va + KVM_CT_GAP_IST_NMI;
	tss->ist[IST_INDEX_DF] = va + KVM_CT_GAP_IST_DF;
	tss->ist[IST_INDEX_MCE] = va + KVM_CT_GAP_IST_MC;
	tss->io_bitmap_base = IO_BITMAP_OFFSET_INVALID;

	for (v = 0; v < 256; v++) {
		unsigned int ist = v == X86_TRAP_NMI ? IST_INDEX_NMI + 1 :
				   v == X86_TRAP_DF ? IST_INDEX_DF + 1 :
				   v == X86_TRAP_MC ? IST_INDEX_MCE + 1 : 0;

		pack_gate(&idt[v], GATE_INTERRUPT, stubs + v * KVM_CT_GAP_STUB_SIZE, 0, ist,
			  KVM_CT_GAP_CS);
	}
	idtr->size = 256 * sizeof(gate_desc) - 1;
	idtr->address = (unsigned long)idt;

	r = gap_map(block);
	if (r)
		return r;
	*(u64 *)(state + KVM_CT_GAP_X2APIC) = x2apic_mode;
	/* A tick per millisecond. */
	if (boot_cpu_has(X86_FEATURE_TSC_DEADLINE_TIMER))
		*(u64 *)(state + KVM_CT_GAP_TSC_TICK) = tsc_khz;
	else
		*(u64 *)(state + KVM_CT_GAP_TMICT) = (u64)lapic_timer_period * HZ / MSEC_PER_SEC;
	return 0;
}

/* What the runtime reports, for debugfs. */
void kvm_caretaker_gap_show(void *block, struct seq_file *m)
{
	void *state = block + KVM_CT_GAP_STATE;
	u64 fault = READ_ONCE(*(u64 *)(state + KVM_CT_GAP_FAULT));

	seq_printf(m, "gap_ticks %llu\ngap_nmis %llu\ngap_fault_vector %lld\ngap_fault_rip 0x%llx\n",
		   READ_ONCE(*(u64 *)(state + KVM_CT_GAP_TICKS)),
		   READ_ONCE(*(u64 *)(state + KVM_CT_GAP_NMIS)), (s64)fault - 1,
		   READ_ONCE(*(u64 *)(state + KVM_CT_GAP_FAULT_RIP)));
}

/*
 * On the dock, with IRQs disabled and virtualization off: leave the kernel
 * for the runtime.  The call never returns (the runtime switches to its own
 * stack and tables); INIT ends it.
 */
void kvm_caretaker_gap_enter(void *block)
{
	void *state = block + KVM_CT_GAP_STATE;
	u64 *top = block + KVM_CT_GAP_PGTABLE;

	/*
	 * The runtime unmapped the switch the last time it ran here, and its
	 * LTR marked the TSS busy.
	 */
	top[*(u64 *)(state + KVM_CT_GAP_SWITCH_SLOT)] = *(u64 *)(state + KVM_CT_GAP_SWITCH_ENTRY);
	gap_set_tss(state);
	*(u64 *)(state + KVM_CT_GAP_FAULT) = 0;
	kvm_caretaker_gap_switch(*(u64 *)(state + KVM_CT_GAP_CR3),
				 (unsigned long)block + KVM_CT_GAP_CODE, state);
}
