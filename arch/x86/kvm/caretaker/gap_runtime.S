/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The caretaker's gap runtime: what runs on a caretaker's offlined CPU
 * once nothing of the kernel may be reached from it.  It is copied into its
 * block (see gap.c) and runs there on its own page table, GDT, IDT, TSS and
 * stacks: every address it uses is RIP-relative, inside the block.  It ticks
 * on the CPU's local APIC timer, writes its heartbeat into the control
 * block, and acts on the host's commands: PARK (stop, and wait in HLT for
 * INIT) and FAULT (a test: raise #UD).  An exception parks it, recorded; an
 * NMI is counted.
 *
 * It is data to the kernel, never executed where it is linked.
 */
#include <linux/linkage.h>
#include <asm/ibt.h>
#include <asm/linkage.h>
#include <asm/nospec-branch.h>
#include <asm/processor-flags.h>
#include "gap.h"

#define GAP(ofs)	(.Lbase + (ofs))(%rip)
#define STATE(ofs)	GAP(KVM_CT_GAP_STATE + (ofs))
#define CTL(ofs)	GAP(KVM_CT_GAP_CTL + (ofs))

#define APIC_EOI_REG	0xb0
#define APIC_LVTT_REG	0x320
#define APIC_TMICT_REG	0x380
#define APIC_TDCR_REG	0x3e0

/*
 * Write a 32-bit constant or register to a local APIC register: through
 * its x2APIC MSR, or its xAPIC MMIO page, which the block maps.
 */
.macro apic_write reg:req, val:req
	movl	\val, %eax
	cmpq	$0, STATE(KVM_CT_GAP_X2APIC)
	je	.Lmmio\@
	xorl	%edx, %edx
	movl	$(0x800 + (\reg >> 4)), %ecx
	wrmsr
	jmp	.Ldone\@
.Lmmio\@:
	movl	%eax, GAP(KVM_CT_GAP_APIC + \reg)
.Ldone\@:
.endm

	.pushsection .rodata, "a"
	.balign 16
SYM_DATA_START(kvm_caretaker_gap_code)
.Lbase:
	/*
	 * Entered from kvm_caretaker_gap_switch(), IRQs disabled, on the
	 * runtime's GDT, TSS, IDT and page table, which still maps that
	 * function's page: unmap it.
	 */
	ENDBR
	cli
	movq	STATE(KVM_CT_GAP_SWITCH_SLOT), %rax
	leaq	GAP(KVM_CT_GAP_PGTABLE), %rcx
	movq	$0, (%rcx,%rax,8)
	movq	%cr3, %rax
	movq	%rax, %cr3
	leaq	GAP(KVM_CT_GAP_STACK), %rsp
	pushq	$KVM_CT_GAP_CS
	leaq	1f(%rip), %rax
	pushq	%rax
	lretq
1:	movl	$KVM_CT_GAP_DS, %eax
	movl	%eax, %ds
	movl	%eax, %es
	movl	%eax, %ss
	movl	%eax, %fs
	movl	%eax, %gs

	/*
	 * The tick: the local APIC timer, in TSC-deadline mode if the host
	 * gave a TSC period, else periodic, undivided.
	 */
	cmpq	$0, STATE(KVM_CT_GAP_TSC_TICK)
	je	2f
	apic_write APIC_LVTT_REG, $(KVM_CT_GAP_TICK_VECTOR | (2 << 17))
	mfence					/* the mode before the deadline */
	rdtsc
	shlq	$32, %rdx
	orq	%rdx, %rax
	movq	%rax, STATE(KVM_CT_GAP_NEXT_TICK)
	call	.Ltsc_tick
	jmp	3f
2:	apic_write APIC_TDCR_REG, $0xb
	apic_write APIC_LVTT_REG, $(KVM_CT_GAP_TICK_VECTOR | (1 << 17))
	movl	STATE(KVM_CT_GAP_TMICT), %ebx
	apic_write APIC_TMICT_REG, %ebx
3:

	movl	$KVM_CT_STATE_GAP, CTL(KVM_CT_CTL_STATE)
	/* Whatever the host sent until now (GAP itself) is done. */
	movq	CTL(KVM_CT_CTL_CMD_SEQ), %rax
	movq	%rax, CTL(KVM_CT_CTL_ACK_SEQ)

.Lloop:
	rdtsc
	shlq	$32, %rdx
	orq	%rdx, %rax
	movq	%rax, CTL(KVM_CT_CTL_HEARTBEAT)
	/* A TSC-deadline tick is armed again once it passed. */
	cmpq	$0, STATE(KVM_CT_GAP_TSC_TICK)
	je	4f
	cmpq	STATE(KVM_CT_GAP_NEXT_TICK), %rax
	jb	4f
	call	.Ltsc_tick
4:
	movq	CTL(KVM_CT_CTL_CMD_SEQ), %rax
	cmpq	CTL(KVM_CT_CTL_ACK_SEQ), %rax
	jne	.Lcommand
	/* Until the tick, a kick or an NMI. */
	sti
	hlt
	cli
	jmp	.Lloop

.Lcommand:
	movq	%rax, %rsi
	movl	CTL(KVM_CT_CTL_CMD), %ecx
	cmpl	$KVM_CT_CMD_PARK, %ecx
	je	.Lpark
	/* Anything but PARK and FAULT (a late RETURN) is done: nothing to do. */
	movq	%rsi, CTL(KVM_CT_CTL_ACK_SEQ)
	cmpl	$KVM_CT_CMD_FAULT, %ecx
	jne	.Lloop
	ud2

.Lpark:
	/* Stop, for INIT. */
	call	.Lstop_tick
	movl	$KVM_CT_STATE_PARKED, CTL(KVM_CT_CTL_STATE)
	movq	%rsi, CTL(KVM_CT_CTL_ACK_SEQ)
.Lhalt:
	cli
	hlt
	jmp	.Lhalt

	/* The next TSC-deadline tick, one period after the last. */
.Ltsc_tick:
	movq	STATE(KVM_CT_GAP_TSC_TICK), %rax
	addq	STATE(KVM_CT_GAP_NEXT_TICK), %rax
	movq	%rax, STATE(KVM_CT_GAP_NEXT_TICK)
	movq	%rax, %rdx
	shrq	$32, %rdx
	movl	$0x6e0, %ecx			/* MSR_IA32_TSC_DEADLINE */
	wrmsr
	ret

.Lstop_tick:
	apic_write APIC_LVTT_REG, $(1 << 16)
	apic_write APIC_TMICT_REG, $0
	xorl	%eax, %eax
	xorl	%edx, %edx
	cmpq	$0, STATE(KVM_CT_GAP_TSC_TICK)
	je	5f
	movl	$0x6e0, %ecx
	wrmsr
5:	ret

	/*
	 * Every vector's stub: push the vector as a byte (after the error
	 * code, or a 0 in its place), KVM_CT_GAP_STUB_SIZE bytes at most.
	 */
	.balign KVM_CT_GAP_STUB_SIZE
.Lstubs:
	vector = 0
	.rept 256
0:	ENDBR
	/* #DF, #TS, #NP, #SS, #GP, #PF, #AC, #CP, #VC, #SX push one. */
	.if vector == 8 || (vector >= 10 && vector <= 14) || vector == 17 || \
	    vector == 21 || vector == 29 || vector == 30
	.else
	pushq	$0
	.endif
	.byte	0x6a, vector			/* pushq $vector, sign-extended */
	jmp	.Lcommon
	.fill	0b + KVM_CT_GAP_STUB_SIZE - ., 1, 0xcc
	vector = vector + 1
	.endr

	/* Stack: vector, error code, RIP, CS, RFLAGS, RSP, SS. */
.Lcommon:
	pushq	%rax
	pushq	%rcx
	pushq	%rdx
	movzbl	24(%rsp), %eax
	cmpl	$2, %eax
	je	.Lnmi
	cmpl	$32, %eax
	jb	.Lfault
	/* An interrupt: the tick or a kick.  EOI, and back to the loop. */
	cmpl	$KVM_CT_GAP_TICK_VECTOR, %eax
	jne	2f
	incq	STATE(KVM_CT_GAP_TICKS)
2:	apic_write APIC_EOI_REG, $0
	jmp	.Liret
.Lnmi:
	incq	STATE(KVM_CT_GAP_NMIS)
.Liret:
	popq	%rdx
	popq	%rcx
	popq	%rax
	addq	$16, %rsp
	iretq

.Lfault:
	/* Recorded, and parked: the host finds the state, and INIT ends it. */
	incl	%eax
	movq	%rax, STATE(KVM_CT_GAP_FAULT)
	movq	40(%rsp), %rax
	movq	%rax, STATE(KVM_CT_GAP_FAULT_RIP)
	call	.Lstop_tick
	movl	$KVM_CT_STATE_FAULTED, CTL(KVM_CT_CTL_STATE)
	jmp	.Lhalt
	/* The code's pages, filled (and an error if it outgrew them). */
	.fill	.Lbase + KVM_CT_GAP_IDT - KVM_CT_GAP_CODE - ., 1, 0xcc
SYM_DATA_END_LABEL(kvm_caretaker_gap_code, SYM_L_GLOBAL, kvm_caretaker_gap_code_end)

SYM_DATA(kvm_caretaker_gap_stubs_offset, .quad .Lstubs - .Lbase)
	.popsection

/*
 * void kvm_caretaker_gap_switch(u64 cr3, unsigned long entry, void *state):
 * in kernel text, which the runtime's page table maps for this one jump.
 * Small and aligned, so that it sits in one page.  With IRQs disabled:
 * flush the TLB (CR4.PGE off; global entries would map the block as the
 * kernel does, not executable), leave FRED for the IDT, load the block's
 * GDT, TSS and IDT (their selectors are the kernel's), then the runtime's
 * page table: an NMI can hit the block's IDT only in the one instruction
 * before that, and the runtime takes it.
 */
	.text
	.balign 128
SYM_FUNC_START(kvm_caretaker_gap_switch)
	ENDBR
	movq	%cr4, %rax
	movabsq	$~(X86_CR4_PGE | X86_CR4_FRED), %rcx
	andq	%rcx, %rax
	movq	%rax, %cr4
	lgdt	KVM_CT_GAP_GDTR(%rdx)
	movl	$KVM_CT_GAP_TR, %eax
	ltr	%ax
	lidt	KVM_CT_GAP_IDTR(%rdx)
	movq	%rdi, %cr3
	ANNOTATE_RETPOLINE_SAFE
	jmp	*%rsi
SYM_FUNC_END(kvm_caretaker_gap_switch)
