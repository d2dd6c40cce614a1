import org.mikv.Mikv;
import org.mikv.MikvException;

/** The JNI binding on the host JDK: errors arrive as exceptions, text streams through the listener. */
public class MikvTest {
  static void check(boolean ok, String what) {
    if (!ok) throw new AssertionError(what);
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
    }
    System.out.println("java binding: ok");
  }
}
