/*
 * crc32c.c - table-driven CRC-32C, "slicing by 8".
 *
 * The bytewise algorithm shifts one byte through the CRC register per table
 * lookup. Slicing-by-8 looks up eight tables at once: table[k][b] is the CRC
 * contribution of byte b followed by k zero bytes, so the eight bytes of a
 * word are folded in parallel and xor'ed together. Bytes are read one at a
 * time, so the result does not depend on the host's byte order or on the
 * buffer's alignment.
 */
#include "raft/storage/crc32c.h"

#include <pthread.h>

#define CRC32C_POLY 0x82F63B78u /* 0x1EDC6F41 bit-reversed (LSB first) */

static uint32_t crc_table[8][256];
static pthread_once_t crc_table_once = PTHREAD_ONCE_INIT;

static void crc_table_build(void)
{
    for (uint32_t b = 0; b < 256; b++) {
        uint32_t c = b;
        for (int bit = 0; bit < 8; bit++)
            c = (c & 1) ? (c >> 1) ^ CRC32C_POLY : c >> 1;
        crc_table[0][b] = c;
    }
    /* One more zero byte after the byte: push the previous table's value
     * through the register once more. */
    for (int k = 1; k < 8; k++)
        for (uint32_t b = 0; b < 256; b++) {
            uint32_t prev = crc_table[k - 1][b];
            crc_table[k][b] = (prev >> 8) ^ crc_table[0][prev & 0xff];
        }
}

static uint32_t load_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

uint32_t crc32c_portable(uint32_t crc, const void *buf, size_t len)
{
    pthread_once(&crc_table_once, crc_table_build);
    const uint8_t *p = buf;
    crc = ~crc;
    for (; len >= 8; p += 8, len -= 8) {
        uint32_t lo = crc ^ load_le32(p);
        uint32_t hi = load_le32(p + 4);
        crc = crc_table[7][lo & 0xff] ^ crc_table[6][(lo >> 8) & 0xff] ^
              crc_table[5][(lo >> 16) & 0xff] ^ crc_table[4][lo >> 24] ^
              crc_table[3][hi & 0xff] ^ crc_table[2][(hi >> 8) & 0xff] ^
              crc_table[1][(hi >> 16) & 0xff] ^ crc_table[0][hi >> 24];
    }
    for (; len > 0; p++, len--)
        crc = crc_table[0][(crc ^ *p) & 0xff] ^ (crc >> 8);
    return ~crc;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <string.h>

__attribute__((target("sse4.2"))) static uint32_t crc32c_sse42(uint32_t crc, const void *buf,
                                                               size_t len)
{
    const uint8_t *p = buf;
    uint64_t c = ~crc;
    for (; len >= 8; p += 8, len -= 8) {
        uint64_t word;
        memcpy(&word, p, sizeof(word)); /* x86 is little-endian, as the CRC reads bytes */
        c = __builtin_ia32_crc32di(c, word);
    }
    uint32_t c32 = (uint32_t)c;
    for (; len > 0; p++, len--)
        c32 = __builtin_ia32_crc32qi(c32, *p);
    return ~c32;
}

static uint32_t (*crc32c_impl)(uint32_t, const void *, size_t);
static pthread_once_t crc32c_choice_once = PTHREAD_ONCE_INIT;

static void crc32c_choose(void)
{
    __builtin_cpu_init();
    crc32c_impl = __builtin_cpu_supports("sse4.2") ? crc32c_sse42 : crc32c_portable;
}

bool crc32c_accelerated(void)
{
    pthread_once(&crc32c_choice_once, crc32c_choose);
    return crc32c_impl == crc32c_sse42;
}

uint32_t crc32c(uint32_t crc, const void *buf, size_t len)
{
    pthread_once(&crc32c_choice_once, crc32c_choose);
    return crc32c_impl(crc, buf, len);
}
#else
bool crc32c_accelerated(void)
{
    return false;
}

uint32_t crc32c(uint32_t crc, const void *buf, size_t len)
{
    return crc32c_portable(crc, buf, len);
}
#endif
