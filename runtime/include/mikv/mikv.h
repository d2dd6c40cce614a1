/* mikv — a compact runtime for small Llama-family models with a mixed-precision KV cache.
 * The C API. C99, opaque handles, no exceptions cross it. Every call returns a mikv_status;
 * the message of the last failure is kept per handle (mikv_model_error / mikv_session_error) or,
 * for calls that have no handle yet, per thread (mikv_last_error).
 *
 * Threads: a mikv_model is immutable after loading and may be shared by many sessions; a
 * mikv_session must be used by one thread at a time. */
#ifndef MIKV_H_
#define MIKV_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum mikv_status {
  MIKV_OK = 0,
  MIKV_ERR_INVALID_ARGUMENT = 1,  /* null handle, bad option value, wrong struct size */
  MIKV_ERR_IO = 2,                /* file cannot be opened, read or mapped */
  MIKV_ERR_BAD_MAGIC = 3,         /* not a .mikv (or not the expected input format) */
  MIKV_ERR_VERSION = 4,           /* a .mikv written by an older or newer format version */
  MIKV_ERR_CORRUPT = 5,           /* truncated, inconsistent or out-of-bounds content */
  MIKV_ERR_UNSUPPORTED = 6,       /* architecture, tensor type or feature this build cannot run */
  MIKV_ERR_OUT_OF_MEMORY = 7,     /* an allocation failed */
  MIKV_ERR_BUDGET = 8,            /* the memory budget cannot hold what was asked */
  MIKV_ERR_CONTEXT_OVERFLOW = 9,  /* more tokens than the session's context */
  MIKV_ERR_BAD_TOKEN = 10,        /* a token id outside the vocabulary */
  MIKV_ERR_INTERNAL = 11,         /* a bug or a failure of a dependency (XNNPACK) */
  MIKV_ERR_CACHE_FULL = 12        /* the KV cache has no room and its configuration refuses to evict */
} mikv_status;

/* A short constant name for a status ("MIKV_ERR_CORRUPT"). */
const char* mikv_status_name(mikv_status status);

#ifdef __cplusplus
}
#endif

#endif /* MIKV_H_ */
