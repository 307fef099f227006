/* Wine 8 (Debian 12) has no bcryptprimitives.dll, whose ProcessPrng Rust's standard
 * library imports on Windows for random bytes (HashMap seeds). This stand-in, used only
 * to run phiq's Windows build under Wine (tools/test-windows.sh), forwards to
 * RtlGenRandom (advapi32's SystemFunction036), which Wine has. Not shipped. */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) {
    while (len > 0) {
        ULONG n = len > 0x40000000 ? 0x40000000 : (ULONG)len;
        if (!SystemFunction036(data, n)) return FALSE;
        data += n;
        len -= n;
    }
    return TRUE;
}
