// SPDX-License-Identifier: GPL-2.0-only
/*
 * memwalk - a guest workload that checks its own memory
 *
 * Usage: bs4-memwalk MIB STATEFILE
 *
 * Maps MIB MiB of anonymous memory and walks it for ever, at nice 19:
 * every 64-bit word is checked against the value the previous pass wrote
 * there, then rewritten with the value of the next pass. The values
 * depend on the pass and the word's offset, so a page lost, swapped in
 * wrong, handed to the balloon while in use or restored from the wrong
 * frame shows up as a mismatch on the next pass, not only a page of
 * zeroes.
 *
 * STATEFILE is rewritten (by rename) after each pass with one line:
 *   "pass N errors 0 mib M"
 * A mismatch ends the program with status 2 and the line
 *   "MISMATCH pass N offset O got G want W"
 * in STATEFILE and on stderr. The harness reads the file across
 * hibernation cycles: the pass count must keep growing.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

static uint64_t word(uint64_t pass, uint64_t off)
{
	/* splitmix64 of (pass, offset): no two passes agree on a word. */
	uint64_t z = (pass << 40) ^ off ^ 0x9e3779b97f4a7c15ULL;

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static void state(const char *path, const char *line)
{
	char tmp[4096];
	FILE *f;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	f = fopen(tmp, "w");
	if (!f)
		return;
	fputs(line, f);
	fclose(f);
	rename(tmp, path);
}

int main(int argc, char **argv)
{
	uint64_t pass, i, n, *mem;
	char line[256];
	size_t bytes;

	if (argc != 3 || atol(argv[1]) <= 0) {
		fprintf(stderr, "usage: %s MIB STATEFILE\n", argv[0]);
		return 1;
	}
	/*
	 * A background load on the guest's one vCPU: the harness's commands
	 * run first, and memwalk takes what they leave.
	 */
	if (setpriority(PRIO_PROCESS, 0, 19))
		perror("setpriority");
	bytes = (size_t)atol(argv[1]) << 20;
	n = bytes / sizeof(*mem);
	mem = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	for (i = 0; i < n; i++)
		mem[i] = word(0, i);
	for (pass = 1; ; pass++) {
		/*
		 * A compiler barrier: each pass must read what is in memory,
		 * not what the compiler knows the last pass stored there.
		 */
		__asm__ __volatile__("" : : "r" (mem) : "memory");
		for (i = 0; i < n; i++) {
			uint64_t want = word(pass - 1, i);
			uint64_t got = mem[i];

			if (got != want) {
				snprintf(line, sizeof(line),
					 "MISMATCH pass %llu offset %llu got %016llx want %016llx\n",
					 (unsigned long long)pass,
					 (unsigned long long)(i * sizeof(*mem)),
					 (unsigned long long)got,
					 (unsigned long long)want);
				state(argv[2], line);
				fputs(line, stderr);
				return 2;
			}
			mem[i] = word(pass, i);
		}
		snprintf(line, sizeof(line), "pass %llu errors 0 mib %s\n",
			 (unsigned long long)pass, argv[1]);
		state(argv[2], line);
	}
}
