#include "utf8_utf16.h"

/* A well-formed sequence's length from its lead byte (0: not a lead byte), and the range its second byte must take
 * (Unicode Table 3-7: no overlong forms, no surrogates, nothing above U+10FFFF). */
static int sequence_length(unsigned char b, unsigned char* lo, unsigned char* hi) {
  *lo = 0x80, *hi = 0xBF;
  if (b < 0x80) return 1;
  if (b >= 0xC2 && b <= 0xDF) return 2;
  if (b >= 0xE0 && b <= 0xEF) {
    if (b == 0xE0) *lo = 0xA0;
    if (b == 0xED) *hi = 0x9F;
    return 3;
  }
  if (b >= 0xF0 && b <= 0xF4) {
    if (b == 0xF0) *lo = 0x90;
    if (b == 0xF4) *hi = 0x8F;
    return 4;
  }
  return 0;
}

/* How many bytes from s[0] form the longest well-formed start of a sequence (at least 1: an invalid lead byte
 * counts alone); *whole says whether they are a complete character. */
static size_t valid_part(const unsigned char* s, size_t n, int* whole) {
  unsigned char lo, hi;
  const int len = sequence_length(s[0], &lo, &hi);
  *whole = len == 1;
  if (len <= 1) return 1;
  size_t k = 1;
  while (k < (size_t)len && k < n && s[k] >= (k == 1 ? lo : 0x80) && s[k] <= (k == 1 ? hi : 0xBF)) ++k;
  *whole = k == (size_t)len;
  return k;
}

size_t mikv_utf8_complete_prefix(const char* text, size_t n) {
  const unsigned char* s = (const unsigned char*)text;
  size_t i = 0;
  while (i < n) {
    int whole;
    const size_t k = valid_part(s + i, n - i, &whole);
    if (!whole && i + k == n && k >= 1) {
      unsigned char lo, hi;
      if (sequence_length(s[i], &lo, &hi) > 1) return i;  /* a character's start, cut by the end of s: wait */
    }
    i += k;
  }
  return n;
}

size_t mikv_utf8_to_utf16(const char* text, size_t n, uint16_t* out) {
  const unsigned char* s = (const unsigned char*)text;
  size_t i = 0, o = 0;
  while (i < n) {
    int whole;
    const size_t k = valid_part(s + i, n - i, &whole);
    if (!whole) {
      out[o++] = 0xFFFD;
      i += k;
      continue;
    }
    uint32_t c;
    switch (k) {
      case 1: c = s[i]; break;
      case 2: c = (uint32_t)(s[i] & 0x1F) << 6 | (s[i + 1] & 0x3F); break;
      case 3: c = (uint32_t)(s[i] & 0x0F) << 12 | (uint32_t)(s[i + 1] & 0x3F) << 6 | (s[i + 2] & 0x3F); break;
      default:
        c = (uint32_t)(s[i] & 0x07) << 18 | (uint32_t)(s[i + 1] & 0x3F) << 12 | (uint32_t)(s[i + 2] & 0x3F) << 6 |
            (s[i + 3] & 0x3F);
    }
    if (c >= 0x10000) {
      out[o++] = (uint16_t)(0xD800 + ((c - 0x10000) >> 10));
      out[o++] = (uint16_t)(0xDC00 + ((c - 0x10000) & 0x3FF));
    } else {
      out[o++] = (uint16_t)c;
    }
    i += k;
  }
  return o;
}

size_t mikv_utf16_to_utf8(const uint16_t* s, size_t n, char* out) {
  unsigned char* o = (unsigned char*)out;
  size_t w = 0;
  for (size_t i = 0; i < n; ++i) {
    uint32_t c = s[i];
    if (c >= 0xD800 && c <= 0xDBFF && i + 1 < n && s[i + 1] >= 0xDC00 && s[i + 1] <= 0xDFFF) {
      c = 0x10000 + ((c - 0xD800) << 10) + (s[i + 1] - 0xDC00);
      ++i;
    } else if (c >= 0xD800 && c <= 0xDFFF) {
      c = 0xFFFD;  /* unpaired */
    }
    if (c < 0x80) {
      o[w++] = (unsigned char)c;
    } else if (c < 0x800) {
      o[w++] = (unsigned char)(0xC0 | c >> 6);
      o[w++] = (unsigned char)(0x80 | (c & 0x3F));
    } else if (c < 0x10000) {
      o[w++] = (unsigned char)(0xE0 | c >> 12);
      o[w++] = (unsigned char)(0x80 | (c >> 6 & 0x3F));
      o[w++] = (unsigned char)(0x80 | (c & 0x3F));
    } else {
      o[w++] = (unsigned char)(0xF0 | c >> 18);
      o[w++] = (unsigned char)(0x80 | (c >> 12 & 0x3F));
      o[w++] = (unsigned char)(0x80 | (c >> 6 & 0x3F));
      o[w++] = (unsigned char)(0x80 | (c & 0x3F));
    }
  }
  return w;
}
