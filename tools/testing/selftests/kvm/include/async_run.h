/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Helpers for tests of vCPUs that run in their own kernel task
 * (KVM_RUN_ASYNC): finding those tasks, and the options and medians of the
 * performance tests.
 */
#ifndef SELFTEST_KVM_ASYNC_RUN_H
#define SELFTEST_KVM_ASYNC_RUN_H

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test_util.h"

/*
 * The number of vCPU tasks ("kvm-vcpu-<pid>/<id>") in the system, and the
 * sum of their involuntary context switches in *@preemptions if non-NULL.
 */
static inline int vcpu_tasks(long *preemptions)
{
	char path[64], buf[256], *p;
	struct dirent *de;
	int n = 0;
	DIR *d;
	FILE *f;

	if (preemptions)
		*preemptions = 0;
	d = opendir("/proc");
	TEST_ASSERT(d, "opendir /proc");
	while ((de = readdir(d))) {
		snprintf(path, sizeof(path), "/proc/%s/comm", de->d_name);
		f = fopen(path, "r");
		if (!f)
			continue;
		if (!fgets(buf, sizeof(buf), f) || strncmp(buf, "kvm-vcpu-", 9)) {
			fclose(f);
			continue;
		}
		fclose(f);
		n++;
		if (!preemptions)
			continue;
		snprintf(path, sizeof(path), "/proc/%s/status", de->d_name);
		f = fopen(path, "r");
		if (!f)
			continue;
		while (fgets(buf, sizeof(buf), f)) {
			p = strstr(buf, "nonvoluntary_ctxt_switches:");
			if (p)
				*preemptions += atol(p + strlen("nonvoluntary_ctxt_switches:"));
		}
		fclose(f);
	}
	closedir(d);
	return n;
}

/* Every vCPU task ends with its VM: wait up to 5 s for none to be left. */
static inline void wait_no_vcpu_task(const char *what)
{
	int i;

	for (i = 0; i < 500 && vcpu_tasks(NULL); i++)
		usleep(10000);
	TEST_ASSERT(!vcpu_tasks(NULL), "a vCPU task outlived its VM (%s)", what);
}

static inline int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* The median of @n values, leaving @v as it is. */
static inline double median(const double *v, int n)
{
	double c[64];

	TEST_ASSERT(n > 0 && n <= 64, "%d values, want 1 to 64", n);
	memcpy(c, v, n * sizeof(*v));
	qsort(c, n, sizeof(*c), cmp_double);
	return n % 2 ? c[n / 2] : (c[n / 2 - 1] + c[n / 2]) / 2;
}

/* Options of the performance tests: [-r rounds] [-w window_ms] [-o file]. */
static inline void perf_args(int argc, char **argv, int *rounds, int *ms,
			     const char **out)
{
	int opt;

	while ((opt = getopt(argc, argv, "r:w:o:")) != -1) {
		switch (opt) {
		case 'r':
			*rounds = atoi(optarg);
			break;
		case 'w':
			*ms = atoi(optarg);
			break;
		case 'o':
			*out = optarg;
			break;
		default:
			printf("usage: %s [-r rounds] [-w window_ms] [-o file]\n", argv[0]);
			exit(KSFT_FAIL);
		}
	}
	TEST_ASSERT(*rounds > 0 && *rounds <= 64 && *ms > 0, "bad -r or -w");
}

#endif /* SELFTEST_KVM_ASYNC_RUN_H */
