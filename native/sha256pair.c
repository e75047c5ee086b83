/*
 * sha256 of two buffers at once with the x86 SHA extensions. A round
 * instruction (sha256rnds2) waits for the one before it in the same hash,
 * so one hash leaves the unit idle half the time; two independent hashes
 * interleaved fill it: two 256 KiB chunks take about 1.2 times as long as
 * one does with OpenSSL (measured on AMD EPYC). Lazy restore checks its
 * page chunks in pairs with it (lazypages.c).
 *
 * The rounds follow the SHA extensions' usual layout: the state as ABEF and
 * CDGH, four message words per vector, the schedule by sha256msg1/msg2.
 */
#include "sha256pair.h"

#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h>

static const uint32_t K[64] = {
	0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
	0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
	0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
	0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
	0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
	0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
	0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
	0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};
static const uint32_t H0[8] = { 0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19 };

#define SHANI __attribute__((target("sha,sse4.1,ssse3")))

int vj_sha256_pair_supported(void)
{
	unsigned a, b, c, d;
	if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_SSSE3) || !(c & bit_SSE4_1))
		return 0;
	if (__get_cpuid_max(0, NULL) < 7)
		return 0;
	__cpuid_count(7, 0, a, b, c, d);
	return !!(b & bit_SHA);
}

/* nblocks 64-byte blocks of each of the two streams into their states (st0: ABEF, st1: CDGH). */
SHANI static void blocks(__m128i st0[2], __m128i st1[2], const uint8_t *const data[2], size_t nblocks)
{
	const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
	for (size_t n = 0; n < nblocks; n++) {
		__m128i s0[2], s1[2], m[2][4], msg[2];
		_Pragma("GCC unroll 2") for (int i = 0; i < 2; i++) {
			s0[i] = st0[i];
			s1[i] = st1[i];
		}
		/* Four rounds per g: two by the first sha256rnds2, two by the second. */
		_Pragma("GCC unroll 16") for (int g = 0; g < 16; g++) {
			const __m128i k = _mm_loadu_si128((const __m128i *)&K[4 * g]);
			_Pragma("GCC unroll 2") for (int i = 0; i < 2; i++) {
				if (g < 4)
					m[i][g] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(data[i] + n * 64 + 16 * g)), bswap);
				msg[i] = _mm_add_epi32(m[i][g & 3], k);
				s1[i] = _mm_sha256rnds2_epu32(s1[i], s0[i], msg[i]);
			}
			_Pragma("GCC unroll 2") for (int i = 0; i < 2; i++) {
				if (g >= 3 && g < 15) { /* words 4g+4 .. 4g+7 */
					__m128i w = _mm_alignr_epi8(m[i][g & 3], m[i][(g + 3) & 3], 4);
					m[i][(g + 1) & 3] = _mm_sha256msg2_epu32(_mm_add_epi32(m[i][(g + 1) & 3], w), m[i][g & 3]);
				}
				msg[i] = _mm_shuffle_epi32(msg[i], 0x0E);
				s0[i] = _mm_sha256rnds2_epu32(s0[i], s1[i], msg[i]);
				if (g >= 1 && g < 13)
					m[i][(g + 3) & 3] = _mm_sha256msg1_epu32(m[i][(g + 3) & 3], m[i][g & 3]);
			}
		}
		_Pragma("GCC unroll 2") for (int i = 0; i < 2; i++) {
			st0[i] = _mm_add_epi32(st0[i], s0[i]);
			st1[i] = _mm_add_epi32(st1[i], s1[i]);
		}
	}
}

SHANI void vj_sha256_pair(const uint8_t *const data[2], size_t len, uint8_t out[2][32])
{
	const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
	__m128i st0[2], st1[2];
	for (int i = 0; i < 2; i++) {
		__m128i cdab = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&H0[0]), 0xB1);
		__m128i efgh = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&H0[4]), 0x1B);
		st0[i] = _mm_alignr_epi8(cdab, efgh, 8);    /* ABEF */
		st1[i] = _mm_blend_epi16(efgh, cdab, 0xF0); /* CDGH */
	}
	size_t whole = len / 64;
	blocks(st0, st1, data, whole);
	/* The rest and the padding (0x80, zeros, the length in bits, big-endian): one block or two. */
	uint8_t tail[2][128];
	const uint8_t *tails[2] = { tail[0], tail[1] };
	size_t rest = len % 64, ntail = rest < 56 ? 1 : 2;
	uint64_t bits = (uint64_t)len * 8;
	for (int i = 0; i < 2; i++) {
		memset(tail[i], 0, sizeof tail[i]);
		memcpy(tail[i], data[i] + whole * 64, rest);
		tail[i][rest] = 0x80;
		for (int j = 0; j < 8; j++)
			tail[i][ntail * 64 - 1 - j] = (uint8_t)(bits >> (8 * j));
	}
	blocks(st0, st1, tails, ntail);
	for (int i = 0; i < 2; i++) {
		__m128i feba = _mm_shuffle_epi32(st0[i], 0x1B);
		__m128i dchg = _mm_shuffle_epi32(st1[i], 0xB1);
		_mm_storeu_si128((__m128i *)out[i], _mm_shuffle_epi8(_mm_blend_epi16(feba, dchg, 0xF0), bswap));  /* ABCD */
		_mm_storeu_si128((__m128i *)(out[i] + 16), _mm_shuffle_epi8(_mm_alignr_epi8(dchg, feba, 8), bswap)); /* EFGH */
	}
}

#else

int vj_sha256_pair_supported(void)
{
	return 0;
}

void vj_sha256_pair(const uint8_t *const data[2], size_t len, uint8_t out[2][32])
{
	(void)data;
	(void)len;
	memset(out, 0, 2 * 32); /* never called: not supported */
}

#endif
