/*
 * bcryptprimitives.dll for Wine 8, which lacks ProcessPrng: Go 1.22 and
 * later get their random bytes from it on Windows. This stand-in fills the
 * buffer from RtlGenRandom (advapi32's SystemFunction036), which Wine has.
 * Used by .ci/wine/run only, never shipped.
 */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T size)
{
	while (size > 0) {
		ULONG chunk = size > 0x40000000 ? 0x40000000 : (ULONG)size;
		if (!SystemFunction036(data, chunk))
			return FALSE;
		data += chunk;
		size -= chunk;
	}
	return TRUE;
}
