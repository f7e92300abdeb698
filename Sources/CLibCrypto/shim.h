#ifndef PIIVAULT_CLIBCRYPTO_SHIM_H
#define PIIVAULT_CLIBCRYPTO_SHIM_H
/* OpenSSL's SHA-256 only: it uses the CPU's SHA extensions (or AVX2) where libsodium's is portable C, and it is
   already loaded for libpq's TLS. The low-level SHA256_* calls are deprecated in OpenSSL 3.0 in favour of EVP,
   whose context copy allocates; they stay in every 3.x release, so the warnings are turned off for this header. */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/sha.h>
#endif
