// The Java binding's text conversions (bindings/java/jni/utf8_utf16.h): whole characters streamed, ill-formed bytes
// as U+FFFD, 4-byte characters as surrogate pairs — what JNI's modified-UTF-8 calls got wrong or aborted on.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "../bindings/java/jni/utf8_utf16.h"

namespace mikv::test {
namespace {

std::u16string Utf16(const std::string& s) {
  std::vector<uint16_t> out(s.size() + 1);
  out.resize(mikv_utf8_to_utf16(s.data(), s.size(), out.data()));
  return std::u16string(out.begin(), out.end());
}

std::string Utf8(const std::u16string& s) {
  std::string out(3 * s.size() + 1, '\0');
  out.resize(mikv_utf16_to_utf8(reinterpret_cast<const uint16_t*>(s.data()), s.size(), out.data()));
  return out;
}

TEST(Utf8Utf16, AStreamedPieceHoldsBackOnlyACharactersStart) {
  const std::string grin = "\xF0\x9F\x98\x80", e_acute = "\xC3\xA9", euro = "\xE2\x82\xAC";
  EXPECT_EQ(mikv_utf8_complete_prefix("abc", 3), 3u);
  for (size_t cut = 1; cut < grin.size(); ++cut)  // "a" + the emoji's first bytes: "a" goes, the rest waits
    EXPECT_EQ(mikv_utf8_complete_prefix(("a" + grin.substr(0, cut)).data(), 1 + cut), 1u) << cut;
  EXPECT_EQ(mikv_utf8_complete_prefix((grin + e_acute + euro).data(), 9), 9u);
  EXPECT_EQ(mikv_utf8_complete_prefix((e_acute + euro.substr(0, 2)).data(), 4), 2u);
  // Bytes that can start nothing, or a start already broken, are not waited for: they go on, to become U+FFFD.
  EXPECT_EQ(mikv_utf8_complete_prefix("a\xFF", 2), 2u);
  EXPECT_EQ(mikv_utf8_complete_prefix("a\x80", 2), 2u);
  EXPECT_EQ(mikv_utf8_complete_prefix("\xE2\x41", 2), 2u);
  EXPECT_EQ(mikv_utf8_complete_prefix("\xC0", 1), 1u);          // never a lead byte (overlong)
  EXPECT_EQ(mikv_utf8_complete_prefix("\xED\xA0", 2), 2u);      // a surrogate's start: ill-formed already
  EXPECT_EQ(mikv_utf8_complete_prefix("\xF4\x90", 2), 2u);      // above U+10FFFF
  EXPECT_EQ(mikv_utf8_complete_prefix("", 0), 0u);
}

TEST(Utf8Utf16, DecodesWellFormedTextAndReplacesEachIllFormedPart) {
  EXPECT_EQ(Utf16("a\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80"), u"a\u00E9\u20AC\U0001F600");
  EXPECT_EQ(Utf16("\xFF"), u"\uFFFD");
  EXPECT_EQ(Utf16("\xE2\x82"), u"\uFFFD");         // cut: one replacement for the maximal subpart
  EXPECT_EQ(Utf16("\xE2\x82" "A"), u"\uFFFDA");
  EXPECT_EQ(Utf16("\xC0\xAF"), u"\uFFFD\uFFFD");   // overlong: two
  EXPECT_EQ(Utf16("\xED\xA0\x80"), u"\uFFFD\uFFFD\uFFFD");  // a surrogate in UTF-8 (CESU-8): three
  EXPECT_EQ(Utf16(std::string("a\0b", 3)), std::u16string(u"a\0b", 3));
}

TEST(Utf8Utf16, EncodesUtf16AndPairsSurrogates) {
  EXPECT_EQ(Utf8(u"a\u00E9\u20AC\U0001F600"), "a\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80");
  EXPECT_EQ(Utf8(std::u16string(1, (char16_t)0xD83D)), "\xEF\xBF\xBD");  // unpaired: U+FFFD
  EXPECT_EQ(Utf8(std::u16string{(char16_t)0xDE00, u'x'}), "\xEF\xBF\xBDx");
  const std::string all = "The \xE2\x80\x9Cquick\xE2\x80\x9D fox \xF0\x9F\xA6\x8A, na\xC3\xAFve.";
  EXPECT_EQ(Utf8(Utf16(all)), all);
}

}  // namespace
}  // namespace mikv::test
