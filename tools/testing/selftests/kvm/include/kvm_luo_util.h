/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Helpers of the live update tests (KVM_CAP_VM_PRESERVE): LUO sessions,
 * through the library of the LUO selftests, and vCPUs in their own kernel
 * task (KVM_RUN_ASYNC).  Each asserts success.
 */
#ifndef SELFTEST_KVM_LUO_UTIL_H
#define SELFTEST_KVM_LUO_UTIL_H

#include <errno.h>
#include <string.h>
#include <sys/ioctl.h>

#include <linux/kvm.h>

#include "kselftest.h"
#include "test_util.h"
#include "libliveupdate.h"

/* LUO, through the library of the LUO selftests: it returns -errno. */

static inline void assert_luo_errno(int r, int e, const char *what)
{
	TEST_ASSERT(r == -e, "%s: expected errno %d (%s), got %d (%s)", what, e, strerror(e),
		    -r, strerror(-r));
}

static inline int luo_open(void)
{
	int fd = luo_open_device();

	if (fd < 0)
		ksft_exit_skip("cannot open %s: %s\n", LUO_DEVICE, strerror(errno));
	return fd;
}

static inline int create_session(int luo_fd, const char *name)
{
	int fd = luo_create_session(luo_fd, name);

	TEST_ASSERT(fd >= 0, "create session %s: %s", name, strerror(-fd));
	return fd;
}

static inline int retrieve_session(int luo_fd, const char *name)
{
	int fd = luo_retrieve_session(luo_fd, name);

	TEST_ASSERT(fd >= 0, "retrieve session %s: %s", name, strerror(-fd));
	return fd;
}

static inline void preserve_fd(int session_fd, int fd, u64 token)
{
	int r = luo_session_preserve_fd(session_fd, fd, token);

	TEST_ASSERT(!r, "preserve token %lu: %s", token, strerror(-r));
}

static inline int retrieve_fd(int session_fd, u64 token)
{
	int fd = luo_session_retrieve_fd(session_fd, token);

	TEST_ASSERT(fd >= 0, "retrieve token %lu: %s", token, strerror(-fd));
	return fd;
}

static inline void finish_session(int session_fd, const char *name)
{
	int r = luo_session_finish(session_fd);

	TEST_ASSERT(!r, "FINISH %s: %s", name, strerror(-r));
}

/* vCPUs in their own kernel task (KVM_RUN_ASYNC). */

static inline int run_async(int vcpu_fd, u32 flags, struct kvm_run_async *ra)
{
	memset(ra, 0, sizeof(*ra));
	ra->flags = flags;
	return ioctl(vcpu_fd, KVM_RUN_ASYNC, ra);
}

static inline void start_vcpu(int vcpu_fd)
{
	struct kvm_run_async ra;

	TEST_ASSERT(!run_async(vcpu_fd, 0, &ra), "KVM_RUN_ASYNC: errno %d", errno);
}

static inline void stop_vcpu(int vcpu_fd)
{
	struct kvm_run_async ra;

	TEST_ASSERT(!run_async(vcpu_fd, KVM_RUN_ASYNC_STOP, &ra), "STOP: errno %d", errno);
	TEST_ASSERT_EQ(ra.state, KVM_RUN_ASYNC_STATE_SYNC);
}

#endif /* SELFTEST_KVM_LUO_UTIL_H */
