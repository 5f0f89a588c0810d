/*
 * rfs_rans_lane.h - one lane's rANS decode step, shared verbatim by the CPU
 * decoders, the CUDA kernel (which defines RFS_HD as __host__ __device__
 * before including this) and the CPU warp emulator in tests/.
 *
 * Design note (docs/format.md "Lane order"): symbol i of a plane belongs to
 * lane i mod 32.  A step decodes one symbol in every active lane; then every
 * lane whose state fell below L = 2^15 takes one 16-bit word, and those
 * lanes take consecutive words of the stream in ascending lane order.  With
 * states in [2^15, 2^31) and 12-bit probabilities one word always suffices:
 * after a decode x >= 2^15 >> 12 = 8, and 8 << 16 >= 2^15.
 *
 * This header includes nothing from CUDA and does no I/O.
 */
#ifndef RFS_RANS_LANE_H
#define RFS_RANS_LANE_H

#include <stdint.h>

#ifndef RFS_HD
#define RFS_HD
#endif

#define RFS_LANE_PROB_BITS 12u
#define RFS_LANE_MASK ((1u << RFS_LANE_PROB_BITS) - 1u)
#define RFS_LANE_L (1u << 15)

/* x = D(x): decode one symbol from state x with decode table dec
 * (entry: symbol | (freq-1) << 8 | start << 20).  Stays in [8, 2^31) for a
 * state in [2^15, 2^31) and a valid table. */
static inline RFS_HD uint32_t rfs_lane_decode(uint32_t x, const uint32_t *dec, uint8_t *sym)
{
    uint32_t slot = x & RFS_LANE_MASK;
    uint32_t e = dec[slot];
    *sym = (uint8_t)e;
    return (((e >> 8) & 0xfffu) + 1u) * (x >> RFS_LANE_PROB_BITS) + slot - (e >> 20);
}

static inline RFS_HD int rfs_lane_needs_word(uint32_t x)
{
    return x < RFS_LANE_L;
}

static inline RFS_HD uint32_t rfs_lane_refill(uint32_t x, uint16_t word)
{
    return (x << 16) | word;
}

static inline RFS_HD unsigned rfs_lane_popc(uint32_t v)
{
#if defined(__CUDA_ARCH__)
    return (unsigned)__popc(v);
#elif defined(__POPCNT__)
    return (unsigned)__builtin_popcount(v);
#else
    /* The portable files are built without -mpopcnt, where GCC makes
     * __builtin_popcount a call into libgcc (its table loop): bit sums
     * inline instead, in the checked tails' every step. */
    v = v - ((v >> 1) & 0x55555555u);
    v = (v & 0x33333333u) + ((v >> 2) & 0x33333333u);
    return (((v + (v >> 4)) & 0x0f0f0f0fu) * 0x01010101u) >> 24;
#endif
}

/* Index, among this step's refill words, of the word lane takes, given the
 * ballot mask of lanes that need one (bit j set: lane j refills). */
static inline RFS_HD unsigned rfs_lane_word_index(uint32_t need_mask, unsigned lane)
{
    return rfs_lane_popc(need_mask & ((1u << lane) - 1u));
}

#endif
