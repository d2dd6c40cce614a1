import org.mikv.Mikv;
import org.mikv.MikvException;

/** The JNI binding on the host JDK: errors arrive as exceptions, text streams through the listener. */
public class MikvTest {
  static void check(boolean ok, String what) {
    if (!ok) throw new AssertionError(what);
  }

  static void checkSurrogatesPaired(String text) {
    for (int i = 0; i < text.length(); ++i) {
      char c = text.charAt(i);
      if (Character.isHighSurrogate(c)) check(i + 1 < text.length() && Character.isLowSurrogate(text.charAt(++i)), "paired");
      else check(!Character.isLowSurrogate(c), "no lone low surrogate");
    }
  }

  public static void main(String[] args) {
    try {
      new Mikv.Model("/nonexistent.mikv");
      check(false, "loading a missing file must throw");
    } catch (MikvException e) {
      check(e.status.equals("MIKV_ERR_IO"), "missing file -> MIKV_ERR_IO, got " + e.status);
    }
    try (Mikv.Model model = new Mikv.Model(args[0])) {
      check(model.vocabSize() > 0, "vocab size");
      try {
        new Mikv.Session(model, 0, 1, "no-such-policy", 0);
        check(false, "an unknown policy must throw");
      } catch (MikvException e) {
        check(e.status.equals("MIKV_ERR_INVALID_ARGUMENT"), "unknown policy status");
      }
      try {
        new Mikv.Session(model, 0, 1, "mikv/int9", 0);
        check(false, "a bad cache string must throw");
      } catch (MikvException e) {
        check(e.status.equals("MIKV_ERR_INVALID_ARGUMENT") && e.getMessage().contains("int9"), "bad cache string: " + e.getMessage());
      }
      // A tiered, rotated cache in one string (stories260K's head_dim is 8: groups of 8).
      try (Mikv.Session session = new Mikv.Session(model, 0, 1, "mikv/int8:g8@0.05/k4v2:g8/int2:g8+rot", 150000, false)) {
        String text = session.generate("Once upon a time", 40, null);
        check(text.length() > 20, "the tiered cache generates: '" + text + "'");
      }
      StringBuilder streamed = new StringBuilder();
      try (Mikv.Session session = new Mikv.Session(model, 0, 1, "plain", 0)) {
        String text = session.generate("Once upon a time", 40, piece -> {
          streamed.append(piece);
          return true;
        });
        System.out.println("Once upon a time" + text);
        check(text.contains("Lily"), "the known continuation");
        check(text.equals(streamed.toString()), "streamed pieces make the text");
      }
      // Text beyond ASCII crosses as UTF-16 (an emoji is a surrogate pair, not modified UTF-8's two 3-byte halves):
      // the prompt tokenizes, the pieces stream as whole characters, and no half of a pair is left alone.
      StringBuilder pieces = new StringBuilder();
      try (Mikv.Session session = new Mikv.Session(model, 0, 1, "plain", 0)) {
        String text = session.generate("Once upon a time \uD83D\uDE00 na\u00EFve", 40, piece -> {
          pieces.append(piece);
          return true;
        });
        check(text.equals(pieces.toString()), "streamed pieces make the text beyond ASCII");
        checkSurrogatesPaired(text);
      }
    }
    // A random model that, after an emoji, emits byte tokens (<0x80>: a lone continuation byte, not UTF-8): each
    // arrives as U+FFFD. (Before session 47 the glue passed such bytes to NewStringUTF, which -Xcheck:jni and
    // Android's CheckJNI reject.)
    try (Mikv.Model random = new Mikv.Model(args[1]);
         Mikv.Session session = new Mikv.Session(random, 0, 1, "plain", 0)) {
      StringBuilder pieces = new StringBuilder();
      String text = session.generate("\uD83D\uDE00", 12, piece -> {
        pieces.append(piece);
        return true;
      });
      check(text.equals(pieces.toString()), "streamed pieces make the random model's text");
      check(text.equals("\uFFFD".repeat(12)), "twelve lone 0x80 bytes, each U+FFFD: '" + text + "'");
      checkSurrogatesPaired(text);
    }
    // The same random model in q8_0 blocks decodes in lockstep on two threads: each thread's share of the rows reads
    // and sets, and the text does not depend on it; the f32 one has no shares.
    try (Mikv.Model random8 = new Mikv.Model(args[2]);
         Mikv.Session equal = new Mikv.Session(random8, 0, 2, "mikv", 0);
         Mikv.Session uneven = new Mikv.Session(random8, 0, 2, "mikv", 0)) {
      double[] shares = equal.threadShares();
      check(shares.length == 2 && shares[0] == 0.5 && shares[1] == 0.5, "two equal shares at the start");
      uneven.setThreadShares(new double[] {3, 1});
      check(uneven.threadShares()[0] == 0.75, "3:1 sets a share of 0.75: " + uneven.threadShares()[0]);
      String a = equal.generate("Once upon a time", 24, null), b = uneven.generate("Once upon a time", 24, null);
      check(a.equals(b), "the same text whatever the shares");
      try {
        uneven.setThreadShares(new double[] {1, 1, 1});
        check(false, "three weights for two threads must throw");
      } catch (MikvException e) {
        check(e.status.equals("MIKV_ERR_INVALID_ARGUMENT") && e.getMessage().contains("2 threads"), "3 weights: " + e.getMessage());
      }
      try {
        uneven.setThreadShares(new double[] {1, Double.NaN});
        check(false, "a NaN weight must throw");
      } catch (MikvException e) {
        check(e.getMessage().contains("positive and finite"), "NaN weight: " + e.getMessage());
      }
      // On one of its two threads the session writes the same text.
      check(equal.activeThreads() == 2 || equal.activeThreads() == 1, "one or two active threads: " + equal.activeThreads());
      uneven.reset();
      uneven.setActiveThreads(1);
      check(uneven.activeThreads() == 1, "set to one thread: " + uneven.activeThreads());
      check(uneven.generate("Once upon a time", 24, null).equals(a), "the same text on one thread");
      try {
        uneven.setActiveThreads(3);
        check(false, "three threads of two must throw");
      } catch (MikvException e) {
        check(e.status.equals("MIKV_ERR_INVALID_ARGUMENT") && e.getMessage().contains("1..2"), "3 threads: " + e.getMessage());
      }
    }
    try (Mikv.Model random8 = new Mikv.Model(args[2])) {
      Mikv.Session closed = new Mikv.Session(random8, 0, 2, "mikv", 0);
      closed.close();
      closed.threadShares();
      check(false, "a closed session's shares must throw");
    } catch (MikvException e) {
      check(e.status.equals("MIKV_ERR_INVALID_ARGUMENT"), "closed session: " + e.status);
    }
    try (Mikv.Model random = new Mikv.Model(args[1]); Mikv.Session pooled = new Mikv.Session(random, 0, 2, "plain", 0)) {
      pooled.threadShares();
      check(false, "a session of f32 projections has no shares to read");
    } catch (MikvException e) {
      check(e.status.equals("MIKV_ERR_INVALID_ARGUMENT") && e.getMessage().contains("lockstep"), "pooled: " + e.getMessage());
    }
    System.out.println("java binding: ok");
  }
}
