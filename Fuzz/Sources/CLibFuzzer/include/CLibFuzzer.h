#ifndef PIIVAULT_CLIBFUZZER_H
#define PIIVAULT_CLIBFUZZER_H
#include <stddef.h>
#include <stdint.h>

/// libFuzzer's driver (in the toolchain's libclang_rt.fuzzer, linked by -sanitize=fuzzer): runs the fuzzing loop
/// with libFuzzer's command line over `callback`. SwiftPM makes an executable's entry point `main` itself
/// (`--defsym main=<module>_main`), so libFuzzer's own `main` is never linked; each harness's main.swift calls this.
int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));

#endif
