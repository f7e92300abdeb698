#ifndef PIIVAULT_CLIBPQ_SHIM_H
#define PIIVAULT_CLIBPQ_SHIM_H
#include <libpq-fe.h>
/* OpenSSL, which libpq uses for TLS and SCRAM: only to keep it from tearing itself down at exit (see
   PostgresConnection.connect). libpq-dev depends on libssl-dev, so the header is there wherever libpq's is. */
#include <openssl/crypto.h>
#endif
