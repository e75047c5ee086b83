/*
 * The XSAVE layout of this CPU, for checkpoints that are restored on another
 * CPU: which state components the OS has enabled (XCR0, read with XGETBV)
 * and where each lies in the standard (non-compacted) XSAVE area, which is
 * the format ptrace's NT_X86_XSTATE uses (CPUID leaf 0xD, sub-leaf i: EAX is
 * the component's size, EBX its offset).
 */

#include <cpuid.h>
#include <stdint.h>

#include "cpu.h"
#include "napi_util.h"

#define CPUID_XSAVE_LEAF 0xd
#define CPUID1_ECX_OSXSAVE (1u << 27)

static uint64_t read_xcr0(void)
{
	uint32_t eax, ebx, ecx, edx;
	if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx) || !(ecx & CPUID1_ECX_OSXSAVE))
		return 0;
	uint32_t lo, hi;
	__asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
	return ((uint64_t)hi << 32) | lo;
}

/*
 * MXCSR_MASK: the MXCSR bits this CPU accepts (FXSAVE writes it at byte 28);
 * 0 there means the architectural default 0xffbf. The kernel refuses, with
 * EINVAL, a saved MXCSR with any other bit set.
 */
static uint32_t read_mxcsr_mask(void)
{
	uint8_t area[512] __attribute__((aligned(16))) = { 0 };
	__asm__ volatile("fxsave64 %0" : "=m"(area));
	uint32_t mask = (uint32_t)area[28] | (uint32_t)area[29] << 8 | (uint32_t)area[30] << 16 | (uint32_t)area[31] << 24;
	return mask ? mask : 0xffbf;
}

/* cpuXstate(): { xcr0: bigint (0 without XSAVE), mxcsrMask, components: [{ bit, offset, size }] for each enabled component from 2 up }. */
napi_value js_cpu_xstate(napi_env env, napi_callback_info info)
{
	(void)info;
	uint64_t xcr0 = read_xcr0();
	napi_value out, list;
	napi_create_object(env, &out);
	napi_create_array(env, &list);
	uint32_t n = 0;
	for (unsigned bit = 2; bit < 64; bit++) {
		if (!(xcr0 & (1ull << bit)))
			continue;
		uint32_t size, offset, ecx, edx;
		__cpuid_count(CPUID_XSAVE_LEAF, bit, size, offset, ecx, edx);
		if (!size)
			continue;
		napi_value c;
		napi_create_object(env, &c);
		napi_set_named_property(env, c, "bit", vj_make_i32(env, (int32_t)bit));
		napi_set_named_property(env, c, "offset", vj_make_i32(env, (int32_t)offset));
		napi_set_named_property(env, c, "size", vj_make_i32(env, (int32_t)size));
		napi_set_element(env, list, n++, c);
	}
	napi_set_named_property(env, out, "xcr0", vj_make_u64(env, xcr0));
	napi_set_named_property(env, out, "mxcsrMask", vj_make_u64(env, read_mxcsr_mask()));
	napi_set_named_property(env, out, "components", list);
	return out;
}
