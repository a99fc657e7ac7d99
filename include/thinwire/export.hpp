// Symbol visibility for the shared library: everything is hidden unless marked THINWIRE_API.
#pragma once

#if defined(_WIN32)
#define THINWIRE_API
#else
#define THINWIRE_API __attribute__((visibility("default")))
#endif
