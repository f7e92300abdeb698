#ifndef PIIVAULT_CSODIUM_SHIM_H
#define PIIVAULT_CSODIUM_SHIM_H
#include <sodium.h>
#endif
