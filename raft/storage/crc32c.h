/*
 * crc32c.h - CRC-32C (Castagnoli), the checksum of every durable record.
 *
 * Polynomial 0x1EDC6F41 (reflected 0x82F63B78), initial value and final xor
 * 0xFFFFFFFF, as in iSCSI, ext4 and SSE4.2's crc32 instruction. It detects
 * every burst error up to 32 bits and, unlike the zlib CRC-32, keeps a large
 * Hamming distance at the record sizes a log writes.
 */
#ifndef RAFT_CRC32C_H
#define RAFT_CRC32C_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Returns the CRC-32C of buf[0..len) continued from `crc`: pass 0 to start.
 * Chaining is the same as one call over the concatenation:
 * crc32c(crc32c(0, a, na), b, nb) == crc32c(0, a||b, na + nb).
 * Thread-safe. Uses the processor's crc32 instruction where there is one. */
uint32_t crc32c(uint32_t crc, const void *buf, size_t len);

/* The same, with lookup tables (built once, on first use), on any
 * processor: what crc32c falls back to, and what tests compare it with. */
uint32_t crc32c_portable(uint32_t crc, const void *buf, size_t len);

/* Whether crc32c uses the processor's instruction. */
bool crc32c_accelerated(void);

#endif
