// The Java binding's text conversions (bindings/java/jni/utf8_utf16.c: hand-written, so that JNI never sees
// modified UTF-8) on arbitrary bytes, with their promises checked: UTF-8 -> UTF-16 fits n units and UTF-16 -> UTF-8
// fits 3 units' bytes each (each buffer exactly that size, so ASan sees any write past it); a second round trip
// changes nothing; bytes that gave no U+FFFD come back as they were; a streamed prefix holds back at most a
// character's first three bytes, and only a character's start.
#include <algorithm>
#include <cstdlib>
#include <vector>

#include "../bindings/java/jni/utf8_utf16.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const char* text = reinterpret_cast<const char*>(data);
  std::vector<uint16_t> utf16(size);
  utf16.resize(mikv_utf8_to_utf16(text, size, utf16.data()));
  std::vector<char> utf8(3 * utf16.size());
  utf8.resize(mikv_utf16_to_utf8(utf16.data(), utf16.size(), utf8.data()));
  std::vector<uint16_t> again(utf8.size());
  again.resize(mikv_utf8_to_utf16(utf8.data(), utf8.size(), again.data()));
  if (again != utf16) std::abort();  // the first trip made well-formed text: the second keeps it
  bool replaced = false;
  for (uint16_t u : utf16) replaced |= u == 0xFFFD;
  if (!replaced && (utf8.size() != size || !std::equal(utf8.begin(), utf8.end(), text))) std::abort();
  const size_t prefix = mikv_utf8_complete_prefix(text, size);
  if (prefix > size || size - prefix > 3) std::abort();
  if (prefix < size && (data[prefix] < 0xC2 || data[prefix] > 0xF4)) std::abort();  // what waits starts a character
  return 0;
}
