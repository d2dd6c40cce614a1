/* Text between mikv (UTF-8 bytes, which a token's piece may cut inside a character or break: byte-fallback tokens,
 * random or small models) and Java (UTF-16). JNI's own UTF calls take "modified UTF-8", in which a 4-byte character
 * (an emoji) is two 3-byte surrogates and an invalid byte is an error that CheckJNI — on by default in Android debug
 * builds — turns into an abort. So the binding converts itself: a Java string is made with NewString from UTF-16,
 * never from bytes, and a streamed piece holds back a character's first bytes until the rest arrive. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The length of s's prefix that ends on a character boundary: all of s, less a last 1-3 bytes that begin a
 * well-formed character still waiting for its continuation bytes. (Invalid bytes end the prefix nowhere: they are
 * passed on, to become U+FFFD.) */
size_t mikv_utf8_complete_prefix(const char* s, size_t n);

/* UTF-8 -> UTF-16 (out holds at least n units): every ill-formed sequence (a stray continuation byte, a lead byte
 * without its continuations, an overlong form, a surrogate, above U+10FFFF) becomes one U+FFFD per maximal invalid
 * subpart, as Unicode recommends. Returns the units written. */
size_t mikv_utf8_to_utf16(const char* s, size_t n, uint16_t* out);

/* UTF-16 -> UTF-8 (out holds at least 3·n bytes): an unpaired surrogate becomes U+FFFD. Returns the bytes written. */
size_t mikv_utf16_to_utf8(const uint16_t* s, size_t n, char* out);

#ifdef __cplusplus
}
#endif
